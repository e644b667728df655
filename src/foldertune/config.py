"""Settings of a run: one frozen dataclass per concern, validated when built, saved in the run folder.

    cfg = RunConfig.from_flat(data="photos/", model="resnet18", mode="linear", epochs=5)
    cfg.train.lr         # 0.003: the default learning rate for linear mode
    cfg.to_dict()        # what config.json holds under "settings"

Validation messages name the command-line flag (`--epochs`), because that is how most users set a value. The
docstring under each field is also that flag's help in `foldertune train --help` (`field_docs`): "None: ..." or
"False: ..." at its end says what that value means, and becomes the flag's "(default: ...)".
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import itertools
import os
import sys
import typing
from dataclasses import dataclass, field
from typing import Any

from foldertune.data import DEFAULT_MAX_PIXELS
from foldertune.errors import UnknownKeyword, UserError

MODES = ("linear", "finetune", "scratch")
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("cosine", "step", "constant")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BEST_METRICS = ("accuracy", "f1", "balanced_accuracy")
BALANCES = ("none", "weights", "sampler")
FEATURE_CACHES = ("disk", "memory", "off")
IMAGE_CACHES = ("off", "ram", "disk")
AUGMENTS = ("standard", "trivialwide", "randaugment")
DECODES = ("cpu", "device")

# The settings that take one of a fixed set of values: checked in __post_init__, offered as choices by the CLI.
CHOICES = {
    "cache": IMAGE_CACHES,
    "mode": MODES,
    "optimizer": OPTIMIZERS,
    "scheduler": SCHEDULERS,
    "device": DEVICES,
    "precision": PRECISIONS,
    "best_metric": BEST_METRICS,
    "balance": BALANCES,
    "feature_cache": FEATURE_CACHES,
    "augment": AUGMENTS,
    "decode": DECODES,
}

# Learning rates that work for AdamW with batch 32 on the bundled sample and on typical small datasets: the new
# head alone tolerates a large step; a pretrained backbone needs a small one; from scratch sits in between.
DEFAULT_LR = {"linear": 3e-3, "finetune": 5e-4, "scratch": 1e-3}

# Label smoothing by mode: 0.1 beat none beyond the spread over 3 seeds when fine-tuning on the sample and on
# Fashion-MNIST; with a linear head it did not (bench/recipe.py, BENCHMARKS.md "Training recipe"); scratch: unmeasured.
DEFAULT_LABEL_SMOOTHING = {"linear": 0.0, "finetune": 0.1, "scratch": 0.0}

DEFAULT_EMA_DECAY = 0.999  # --ema without a value; short runs average over fewer steps anyway (see training/ema.py)

DEFAULT_WEIGHT_DECAY = {"adamw": 0.05, "adam": 0.0, "sgd": 1e-4}  # AdamW decays decoupled; Adam and SGD use L2

# Settings whose command-line flag is not simply "--" + the field name with dashes.
FLAGS = {
    "root": "DATA",
    "val_fraction": "--val",
    "test_fraction": "--test",
    "backbone": "--model",
    "run_name": "--name",
    "pretrained": "--no-pretrained",
    "report": "--no-report",
}

# Names accepted by `foldertune.train(...)` and `RunConfig.from_flat` that differ from the field name.
ALIASES = {"data": "root", "model": "backbone", "name": "run_name", "val": "val_fraction", "test": "test_fraction"}


NEGATED = {"no_pretrained": "pretrained", "no_report": "report"}  # flags (and keywords) that turn a field off


def flat_setting(key: str, value: Any) -> tuple[str, Any]:
    """A flat setting, as a flag's or keyword's name gives it, as the field it sets and the field's value:
    ("no_report", True) -> ("report", False), ("model", "resnet18") -> ("backbone", "resnet18"), paths as strings."""
    if key in NEGATED:
        key, value = NEGATED[key], not value
    return ALIASES.get(key, key), os.fspath(value) if isinstance(value, os.PathLike) else value


def flag(field_name: str) -> str:
    """The command-line flag that sets a field, for error messages."""
    return FLAGS.get(field_name, "--" + field_name.replace("_", "-"))


def field_docs(klass: type) -> dict[str, str]:
    """The docstring written under each field of one of the dataclasses below, whitespace collapsed: {field: text}."""
    return _docs_by_class()[klass.__name__]


@functools.cache
def _docs_by_class() -> dict[str, dict[str, str]]:
    # Attribute docstrings are not kept at run time: read them from this module's source, once.
    docs: dict[str, dict[str, str]] = {}
    for node in ast.parse(inspect.getsource(sys.modules[__name__])).body:
        if isinstance(node, ast.ClassDef):
            docs[node.name] = {}
            for statement, following in itertools.pairwise(node.body):
                if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                    text = following.value.value if isinstance(following, ast.Expr) else None
                    if isinstance(text, str):
                        docs[node.name][statement.target.id] = " ".join(text.split())
    return docs


KINDS = {int: "a whole number", float: "a number", str: "text", bool: "True or False"}


def _check_choices(config: Any) -> None:
    """Each field's value is of its annotated kind (the API passes values unconverted) and one of its choices."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        kinds = [k for k in typing.get_args(hints[f.name]) or [hints[f.name]] if k is not type(None)]
        if value is not None and len(kinds) == 1 and kinds[0] in KINDS:
            kind = kinds[0]
            fits = isinstance(value, (int, float)) if kind is float else isinstance(value, kind)
            if fits and kind is not bool and isinstance(value, bool):
                fits = False
            if not fits:
                raise UserError(f"{flag(f.name)} must be {KINDS[kind]}; got {value!r}.")
        if f.name in CHOICES and value not in CHOICES[f.name]:
            raise UserError(f"{flag(f.name)} must be one of {', '.join(CHOICES[f.name])}; got {value!r}.")


def _positive(field_name: str, value: float | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or isinstance(value, bool) or not value > 0:
        raise UserError(f"{flag(field_name)} must be a positive number; got {value!r}.")


@dataclass(frozen=True)
class DataConfig:
    """Where the images are and how they are split and read."""

    root: str | None = None
    """Folder with one sub-folder per class, or with train/ and val/ (valid/, validation/) [and test/] folders."""
    val_fraction: float = 0.2
    """Share of each class held out for validation when the folder is not already split."""
    test_fraction: float = 0.0
    """Share of each class held out as a test set when the folder is not already split."""
    manifest: str | None = None
    """A CSV (path, class, split) to use instead of scanning and splitting the folder."""
    img_size: int | None = None
    """Side of the square crop fed to the network, in pixels; None: the backbone's own, 224 for every built-in one."""
    workers: int | None = None
    """DataLoader worker processes, 0 to load in the main process; None: the CPU cores less one (each torchrun
    process's share), at least 1, at most 8 when training on the CPU and 32 with a GPU."""
    max_pixels: int = DEFAULT_MAX_PIXELS
    """Images with more pixels than this are refused unread (decompression-bomb guard)."""
    cache: str = "off"
    """Decode each image once and keep a downsized copy for later epochs: ram (in memory, this run) or disk (in the
    cache folder, reused by later runs); off decodes every image at every epoch."""
    cache_dir: str | None = None
    """Folder for cached features and images; None: $FOLDERTUNE_CACHE_DIR, else ~/.cache/foldertune."""
    decode: str = "cpu"
    """Where the training and validation images are decoded: cpu, in the loader workers; device, JPEGs on the
    training device (nvjpeg on a CUDA GPU), the workers only reading their bytes and other formats decoded on the CPU
    as before. For a GPU whose loader workers cannot keep up; not used by --mode linear with its feature cache."""

    def __post_init__(self) -> None:
        _check_choices(self)
        if self.decode == "device" and self.cache != "off":
            raise UserError(f"--cache {self.cache} keeps pictures decoded on the CPU, and --decode device decodes the "
                            "files on the training device instead; use one or the other.")  # fmt: skip
        if bool(self.root) == bool(self.manifest):
            raise UserError("pass either DATA (an image folder) or --manifest CSV, not both." if self.root else
                            "pass DATA (an image folder) or --manifest CSV.")  # fmt: skip
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not 0 <= value < 1:
                raise UserError(f"{flag(name)} must be a fraction between 0 and 1; got {value!r}.")
        if self.val_fraction + self.test_fraction >= 1:
            raise UserError("--val plus --test must leave some images for training (their sum must be below 1).")
        if self.img_size is not None and (isinstance(self.img_size, bool) or not 16 <= self.img_size <= 4096):
            raise UserError(f"--img-size must be between 16 and 4096 pixels; got {self.img_size!r}.")
        if self.workers is not None and (isinstance(self.workers, bool) or self.workers < 0):
            raise UserError(f"--workers must be 0 or more; got {self.workers!r}.")
        _positive("max_pixels", self.max_pixels)


@dataclass(frozen=True)
class ModelConfig:
    """Which backbone and where its starting weights come from."""

    backbone: str = "mobilenet_v2"
    """A registered backbone, as listed by `foldertune models`, or timm/NAME for any timm model (pip install
    'foldertune[timm]'; `foldertune models --timm PATTERN` lists them)."""
    pretrained: bool = True
    """Start from ImageNet weights; False: start from random weights; scratch mode always does so and records False."""
    weights: str | None = None
    """A state_dict, .safetensors file or foldertune checkpoint to start from instead of the ImageNet weights."""

    def __post_init__(self) -> None:
        from foldertune.models.registry import get_backbone

        get_backbone(self.backbone)  # raises a UserError naming the registered backbones


@dataclass(frozen=True)
class TrainConfig:
    """How the network is trained."""

    mode: str = "finetune"
    """linear: train only the new head; finetune: train every layer; scratch: random start, train every layer."""
    epochs: int = 10
    """Passes over the training split."""
    batch_size: int = 32
    """Images per optimisation step."""
    lr: float | None = None
    """Peak learning rate; None: per mode, linear 3e-3, finetune 5e-4, scratch 1e-3."""
    weight_decay: float | None = None
    """Weight decay, not applied to biases and norm layers; None: per optimizer, adamw 0.05, adam 0, sgd 1e-4."""
    optimizer: str = "adamw"
    """adamw, adam as in the tutorial, or sgd with momentum 0.9."""
    scheduler: str = "cosine"
    """cosine: warm-up then cosine decay per step; step: x0.1 every 7 epochs (the tutorial's); constant."""
    warmup_epochs: float = 1.0
    """Linear warm-up length for the cosine schedule, in epochs; fractions allowed."""
    label_smoothing: float | None = None
    """Cross-entropy label smoothing; None: per mode, 0.1 for finetune and 0 otherwise."""
    augment: str = "standard"
    """Training augmentation: standard is a random resized crop and a horizontal flip; trivialwide and randaugment
    add torchvision's TrivialAugmentWide or RandAugment (2 operations, magnitude 9) to each crop."""
    ema: float | None = None
    """Keep an exponential moving average of the weights with this decay per step (at most (1 + step) / (10 + step):
    short runs average over their last tenth or so) and validate, keep in best.pt and export the averaged weights;
    None: off, the trained weights themselves."""
    head_warmup: int = 0
    """Fine-tune mode: train the new head alone for this many epochs (backbone frozen, as in linear mode), then
    every layer (linear probe, then fine-tune); 0: every layer from the first step."""
    layer_decay: float | None = None
    """Layer-wise learning-rate decay: the head trains at --lr, the block before it at lr x F, the one before that
    at lr x F^2, and so on to the input (blocks in the network's own order); None: every layer at --lr."""
    balance: str = "weights"
    """Imbalanced classes: weights scales each class's loss by (images / classes) / its training images (1 for
    every class of a balanced set); sampler draws the batches with replacement so that every class comes up equally
    often; none trains on the data as it is. weights measured best (bench/trust_balance.py)."""
    seed: int = 0
    """Seeds the split, the initialisation, the order of batches and the augmentation."""
    device: str = "auto"
    """auto picks cuda, then mps, then cpu."""
    precision: str = "auto"
    """auto picks bf16 where the hardware computes it natively, fp16 on older GPUs, otherwise fp32."""
    patience: int | None = None
    """Stop after this many epochs without improvement of the best metric; None: off, every epoch is trained."""
    best_metric: str = "accuracy"
    """Validation metric that selects best.pt: accuracy, (macro) f1 or balanced_accuracy (the mean of the classes'
    recalls: for imbalanced classes)."""
    feature_cache: str = "disk"
    """Linear mode: run the frozen backbone once per image and train the head on stored features, kept on disk
    (reused by later runs) or in memory only; off runs the backbone on every batch, with augmentation."""
    feature_views: int = 1
    """Linear mode with a feature cache: 1 stores the evaluation view only (no augmentation); N adds N-1 random
    crops per image, drawn once, one of them used per image and epoch."""
    compile: bool = False
    """Compile the network with torch.compile (slow first steps, then faster ones where the compiler helps)."""
    folds: int | None = None
    """Cross-validation: deal the train and val images into K stratified folds (copies together; test images stay
    out) and train K runs fold-1 ... fold-K in the run folder, each validated on its own fold; cv.json then holds
    the mean and spread of every metric and the pooled out-of-fold ones. None: one run on one split."""
    refit: bool = False
    """With --folds: after the folds, train a final model with the same settings on all train and val images into
    the run folder itself (its best.pt is the model predict and export use); False: the folds' models only."""

    def __post_init__(self) -> None:
        _check_choices(self)
        for name in ("epochs", "batch_size", "feature_views"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"{flag(name)} must be a whole number of at least 1; got {value!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise UserError(f"--seed must be a whole number of 0 or more; got {self.seed!r}.")
        _positive("lr", self.lr, allow_none=True)
        if self.lr is None:
            object.__setattr__(self, "lr", DEFAULT_LR[self.mode])  # resolved once, while the object is being built
        if self.weight_decay is None:
            object.__setattr__(self, "weight_decay", DEFAULT_WEIGHT_DECAY[self.optimizer])
        if self.weight_decay < 0:
            raise UserError(f"--weight-decay must be 0 or more; got {self.weight_decay!r}.")
        if self.warmup_epochs < 0:
            raise UserError(f"--warmup-epochs must be 0 or more; got {self.warmup_epochs!r}.")
        if self.label_smoothing is None:
            object.__setattr__(self, "label_smoothing", DEFAULT_LABEL_SMOOTHING[self.mode])
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"--label-smoothing must be between 0 and 1; got {self.label_smoothing!r}.")
        if self.ema is not None and not 0 < self.ema < 1:
            raise UserError(f"--ema must be a decay between 0 and 1, such as 0.999; got {self.ema!r}.")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise UserError(
                f"--layer-decay must be a factor above 0 and at most 1, such as 0.8; got {self.layer_decay!r}."
            )
        if isinstance(self.head_warmup, bool) or not isinstance(self.head_warmup, int) or self.head_warmup < 0:
            raise UserError(f"--head-warmup must be a whole number of 0 or more epochs; got {self.head_warmup!r}.")
        if self.head_warmup and self.mode != "finetune":
            raise UserError(f"--head-warmup trains the head on the frozen pretrained backbone first, so it needs "
                            f"--mode finetune; --mode {self.mode} cannot use it.")  # fmt: skip
        if self.head_warmup >= self.epochs:
            raise UserError(f"--head-warmup {self.head_warmup} leaves no epoch to fine-tune every layer in; make it "
                            f"smaller than --epochs {self.epochs} (or use --mode linear).")  # fmt: skip
        if self.layer_decay is not None and self.mode == "linear":
            raise UserError("--layer-decay sets the rates of the backbone's layers, which --mode linear keeps frozen; "
                            "drop it or use --mode finetune.")  # fmt: skip
        if self.augment != "standard" and self.mode == "linear" and self.feature_cache != "off":
            raise UserError(f"--augment {self.augment} needs the images at every epoch, but --mode linear trains on "
                            "stored features; add --feature-cache off.")  # fmt: skip
        if self.patience is not None and (isinstance(self.patience, bool) or self.patience < 1):
            raise UserError(f"--patience must be at least 1 epoch; got {self.patience!r}.")
        if self.folds is not None and (
            isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 2
        ):
            raise UserError(f"--folds must be a whole number of 2 or more (folds to train); got {self.folds!r}.")
        if self.refit and self.folds is None:
            raise UserError("--refit needs --folds K: it trains the final model after K cross-validation runs.")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run; saved as config.json and inside every checkpoint."""

    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    project: str = "runs"
    """Folder that holds run folders."""
    run_name: str | None = None
    """Name of this run's folder; None: MODEL-MODE, or MODEL-MODE-2, -3, ... when that is taken."""
    report: bool = True
    """At the end, also write the figures, Grad-CAM maps, feature map and report.html; False: write the numbers only."""
    wandb: str | None = None
    """Log the run to this Weights & Biases project; needs pip install 'foldertune[wandb]'; WANDB_MODE=offline works
    without a network. None: no W&B."""
    tensorboard: bool = False
    """Also write TensorBoard event files to RUN/tb/ (needs pip install 'foldertune[tensorboard]')."""

    def __post_init__(self) -> None:
        name = self.run_name
        if name is not None and ("/" in name or "\\" in name or name in ("", ".", "..")):
            raise UserError(f"--name {name!r} must be a plain folder name, without slashes.")
        if self.train.mode == "scratch" and self.model.weights:
            raise UserError("--weights cannot be combined with --mode scratch, which starts from random weights.")
        if self.train.mode == "linear" and not (self.model.pretrained or self.model.weights):
            raise UserError("--mode linear trains only the head on a frozen backbone, so it needs pretrained weights.")
        if self.train.mode == "scratch" and self.model.pretrained:
            object.__setattr__(self, "model", dataclasses.replace(self.model, pretrained=False))
        if self.data.decode == "device" and self.train.augment != "standard":
            raise UserError(f"--augment {self.train.augment} runs on the decoded crops in the loader workers, which "
                            "--decode device leaves undecoded; use --decode cpu or --augment standard.")  # fmt: skip
        if self.data.decode == "device" and self.train.mode == "linear" and self.train.feature_cache != "off":
            raise UserError("--decode device applies to the image loaders, which --mode linear does not use with its "
                            "feature cache; drop --decode device or add --feature-cache off.")  # fmt: skip
        if self.train.folds and self.data.val_fraction != DataConfig.val_fraction:
            raise UserError(
                f"--val cannot be combined with --folds: each of the {self.train.folds} folds holds out its own "
                f"1/{self.train.folds} of the images for validation; drop --val."
            )

    @classmethod
    def from_flat(cls, **settings: Any) -> RunConfig:
        """Build from flat keyword settings (`data=..., model=..., epochs=...`), rejecting unknown names."""
        sections: dict[str, dict[str, Any]] = {"data": {}, "model": {}, "train": {}, "run": {}}
        known = {f.name: section for section, klass in _SECTIONS.items() for f in dataclasses.fields(klass)}
        known.update({f.name: "run" for f in dataclasses.fields(cls) if f.name not in _SECTIONS})
        for key, value in settings.items():
            name, value = flat_setting(key, value)
            if name not in known:
                raise UnknownKeyword(f"unknown setting {key!r}{_did_you_mean(key, [*known, *ALIASES])}")
            sections[known[name]][name] = value
        return cls(
            data=DataConfig(**sections["data"]),
            model=ModelConfig(**sections["model"]),
            train=TrainConfig(**sections["train"]),
            **sections["run"],
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        """Inverse of `to_dict`, for config.json and checkpoints; unknown keys are an error."""
        kwargs: dict[str, Any] = {}
        for key, value in raw.items():
            if key in _SECTIONS:
                kwargs[key] = _build_section(_SECTIONS[key], value)
            elif key in {f.name for f in dataclasses.fields(cls)}:
                kwargs[key] = value
            else:
                raise UserError(f"unknown setting {key!r} in a saved config{_did_you_mean(key, _SECTIONS)}")
        return cls(**kwargs)


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


SAVED_BEFORE = {"balance": "none"}  # a setting missing from a config saved before it existed: what such runs did,
# so that resuming or reproducing an older run trains as it did (the default of a new run may differ)


def _build_section(klass: type, raw: dict[str, Any]) -> Any:
    names = [f.name for f in dataclasses.fields(klass)]
    for key in raw:
        if key not in names:
            raise UserError(f"unknown setting {key!r} in a saved config{_did_you_mean(key, names)}")
    older = {key: value for key, value in SAVED_BEFORE.items() if key in names and key not in raw}
    return klass(**older, **raw)


def _did_you_mean(word: str, candidates) -> str:
    """'; did you mean 'x'?' when a candidate is close, else a full stop: the end of an error sentence."""
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f"; did you mean {close[0]!r}?" if close else "."

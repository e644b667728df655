"""The learning-rate range test: `foldertune lr-find DATA`, `ft.lr_find`, and `train --lr auto`, which runs it first.

    found = find_lr(RunConfig.from_flat(data="photos/", mode="linear"))   # LrFind
    found.suggestion        # e.g. 2.3e-03: the rate to train with
    found = lr_find_and_plot(cfg, out=Path("lr.png"))                    # also lr.csv (lr, loss, smoothed) and lr.png

The network as the run would start it (same backbone, weights, mode, optimizer, batch size, augmentation) takes
`steps` optimizer steps (100 by default) with the rate growing exponentially from `start_lr` to `end_lr`. The test
stops once a running average of the loss (weight 0.9, bias-corrected) exceeds 4x its lowest: it diverged. The
curve that is plotted and read is that average run forwards, then backwards over the result: smooth, and without
the forward average's delay (fastai's, of weight 0.98, lags about 50 steps, half a test, behind the rate). The
network's weights and which of its parameters train are put back afterwards; the optimizer is the test's own.

Which rate to suggest, from the smoothed loss against log(rate): three rules are computed. "valley" (fastai's
default rule): the longest stretch over which the loss keeps falling, and the rate halfway into it; "steep":
where the loss falls fastest; "minimum": a tenth of the rate at the lowest loss. The suggestion is the valley;
BENCHMARKS.md has the three against the per-mode defaults on the sample (bench/lr_find.py).
In linear mode with the feature cache the steps train the head on stored features, so the test costs about one
pass of the backbone over the training images; in the other modes each step is a training step on images.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from foldertune.config import DEFAULT_LR, RunConfig
from foldertune.device import Runtime, choose_runtime
from foldertune.errors import UserError
from foldertune.models.build import build_model, head_of, ready_to_train, set_train_mode
from foldertune.models.registry import get_backbone
from foldertune.models.weights import resolve_weights
from foldertune.notebook import tqdm
from foldertune.preprocessing import Preprocessing
from foldertune.runs.tables import write_table
from foldertune.training.distributed import Distributed
from foldertune.training.loaders import build_feature_loaders, build_loaders
from foldertune.training.loop import LoopContext, _on_device
from foldertune.training.optim import build_optimizer
from foldertune.training.prepare import PreparedData, prepare_data

SMOOTHING = 0.9  # weight of the running average of the loss: about 10 steps, a tenth of a 100-step test
DIVERGED = 4.0  # stop once the smoothed loss exceeds this many times its lowest
COLUMNS = ("lr", "loss", "smoothed")


@dataclass(frozen=True)
class LrFind:
    """What the range test measured and what it suggests."""

    lrs: list[float]  # the rate of each step
    losses: list[float]  # each step's training loss
    smoothed: list[float]  # its moving average, forwards and backwards
    suggestion: float  # the rate to train with (the valley rule)
    steep: float  # where the smoothed loss falls fastest against log(rate)
    minimum: float  # a tenth of the rate at the lowest smoothed loss
    diverged: bool  # the test stopped early because the loss blew up
    plot: Path | None = None  # the figure, once drawn (its CSV beside it)

    def describe(self) -> str:
        ended = "stopped when the loss diverged" if self.diverged else "reached the last rate"
        return (f"lr-find: {len(self.lrs)} steps from {self.lrs[0]:.1e} to {self.lrs[-1]:.1e} ({ended}); suggested "
                f"--lr {self.suggestion:.2e} (valley; steepest descent {self.steep:.2e}, minimum/10 "
                f"{self.minimum:.2e})" + (f"; plot: {self.plot}" if self.plot else ""))  # fmt: skip

    def _repr_html_(self) -> str:  # a notebook shows the curve
        import base64

        if self.plot is None or not self.plot.is_file():
            return f"<pre>{self.describe()}</pre>"
        picture = base64.b64encode(self.plot.read_bytes()).decode()
        return f'<div>{self.describe()}</div><img src="data:image/png;base64,{picture}" style="max-width:640px">'


def default_plot_path(cfg: RunConfig) -> Path:
    """Where lr-find draws its curve unless told: beside the runs, named after the backbone and mode."""
    return Path(cfg.project).expanduser() / f"lr-find-{cfg.model.backbone.replace('/', '-')}-{cfg.train.mode}.png"


def lr_find_and_plot(cfg: RunConfig, *, out: Path | None = None, **options) -> LrFind:
    """`find_lr`, then its curve as OUT (.png) and OUT's .csv, the suggestions marked; the default OUT is
    `default_plot_path` (redrawn at every test)."""
    from foldertune.reporting.plots.range_test import plot_lr_find

    found = find_lr(cfg, **options)
    target = Path(out) if out is not None else default_plot_path(cfg)
    table = write_lr_find(found, target.with_suffix(".csv"))
    marks = {"valley": found.suggestion, "steep": found.steep, "minimum/10": found.minimum, "default": cfg.train.lr}
    return dataclasses.replace(found, plot=plot_lr_find(table, marks))


def with_found_lr(cfg: RunConfig, *, data: PreparedData | None, quiet: bool, log=print) -> RunConfig:
    """`train --lr auto`: `cfg` with the range test's suggestion as its learning rate (the test's curve is drawn
    at `default_plot_path`)."""
    found = lr_find_and_plot(cfg, data=data, quiet=quiet, log=log)
    log(found.describe())
    default = DEFAULT_LR[cfg.train.mode]
    if found.suggestion < default / 10:  # measured: fine-tuning at such a rate hardly moves the weights
        log(f"warning: the suggestion is under a tenth of {cfg.train.mode} mode's default ({default:g}); in fine-tune "
            "mode, where this was measured, training at it did far worse than the default: if the plot shows no "
            f"clear valley, train with --lr {default:g}")  # fmt: skip
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=found.suggestion))


def find_lr(
    cfg: RunConfig,
    *,
    data: PreparedData | None = None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int = 100,
    quiet: bool = False,
    log=print,
) -> LrFind:
    """The range test for the network `cfg` would train, on its training split."""
    if not 0 < start_lr < end_lr:
        raise UserError(f"--start-lr must be positive and below --end-lr; got {start_lr!r} and {end_lr!r}.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 10:
        raise UserError(f"--steps must be a whole number of at least 10; got {steps!r}.")
    runtime = choose_runtime(cfg.train.device, cfg.train.precision)
    if data is None:
        data = prepare_data(cfg.data, seed=cfg.train.seed, progress=not quiet)
    state_dict = None
    if cfg.model.pretrained or cfg.model.weights:
        state_dict, _ = resolve_weights(get_backbone(cfg.model.backbone), weights_file=cfg.model.weights, log=log)
    pre = get_backbone(cfg.model.backbone).preprocessing.with_crop_size(cfg.data.img_size)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model.backbone, len(data.classes), state_dict=state_dict, img_size=pre.crop_size)
    return range_test(model, cfg, data, pre, runtime, start_lr=start_lr, end_lr=end_lr, steps=steps, quiet=quiet,
                      log=log)  # fmt: skip


def range_test(
    model: nn.Module,
    cfg: RunConfig,
    data: PreparedData,
    pre: Preprocessing,
    runtime: Runtime,
    *,
    start_lr: float,
    end_lr: float,
    steps: int,
    quiet: bool,
    log,
) -> LrFind:
    """Train `model` for up to `steps` steps at exponentially growing rates; its weights are restored after."""
    weights = copy.deepcopy(model.state_dict())
    trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    name, mode = cfg.model.backbone, cfg.train.mode
    ready_to_train(model, name, mode, runtime)
    dist = Distributed()
    if mode == "linear" and cfg.train.feature_cache != "off":
        loader = build_feature_loaders(model, data, pre, cfg, runtime, dist, quiet=quiet, log=log)["train"]
        network = head_of(model, name)
    else:
        loader = build_loaders(data, pre, cfg, runtime, dist, progress=not quiet)["train"]
        network = model
    optimizer = build_optimizer(model, cfg.train)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)
    scaler = runtime.grad_scaler()
    ctx = LoopContext(runtime, pre, dist, quiet=True)
    growth = (end_lr / start_lr) ** (1 / (steps - 1))
    lrs, losses, smoothed, average, lowest, diverged = [], [], [], 0.0, math.inf, False
    set_train_mode(model, name, mode)
    bar = tqdm(total=steps, desc="lr-find", unit="step", leave=False, disable=True if quiet else None)
    try:
        epoch = 0
        while len(lrs) < steps and not diverged:
            epoch += 1
            loader.batch_sampler.set_epoch(epoch)
            for inputs, targets in loader:
                lr = start_lr * growth ** len(lrs)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                inputs, targets = _on_device(inputs, ctx), targets.to(runtime.device)
                with runtime.autocast():
                    loss = criterion(network(inputs).float(), targets)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                value = loss.item()
                average = SMOOTHING * average + (1 - SMOOTHING) * value
                smooth = average / (1 - SMOOTHING ** (len(lrs) + 1))
                lrs.append(lr)
                losses.append(value)
                smoothed.append(smooth)
                bar.update()
                lowest = min(lowest, smooth)
                if not math.isfinite(smooth) or smooth > DIVERGED * lowest:
                    diverged = True
                    break
                if len(lrs) == steps:
                    break
    finally:
        bar.close()
        model.load_state_dict(weights)
        for key, parameter in model.named_parameters():
            parameter.requires_grad_(trainable[key])
    if len(lrs) < 10:
        raise UserError(f"the loss diverged within {len(lrs)} steps of lr-find; lower --start-lr (it was "
                        f"{start_lr:g}).")  # fmt: skip
    smoothed = zero_lag(losses)
    finite = [value if math.isfinite(value) else math.inf for value in smoothed]
    return LrFind(lrs, losses, smoothed, valley(lrs, finite), steepest(lrs, finite), minimum_tenth(lrs, finite),
                  diverged)  # fmt: skip


def zero_lag(losses: list[float]) -> list[float]:
    """The running average run forwards, then backwards over its result: smooth, without the forward average's
    delay (which would shift the curve, and every suggestion, towards larger rates)."""

    def run(values: list[float]) -> list[float]:
        average, out = 0.0, []
        for i, value in enumerate(values):
            average = SMOOTHING * average + (1 - SMOOTHING) * (value if math.isfinite(value) else 1e30)
            out.append(average / (1 - SMOOTHING ** (i + 1)))
        return out

    return run(run(losses)[::-1])[::-1]


def valley(lrs: list[float], smoothed: list[float]) -> float:
    """The rate halfway into the valley: the stretch that ends where the longest run of ever-lower losses ends (a
    longest strictly decreasing subsequence) and spans as many steps as that run has losses, as fastai reads it."""
    count = len(smoothed)
    length = [1] * count
    last = 0
    for i in range(1, count):
        for j in range(i):
            if smoothed[i] < smoothed[j] and length[j] + 1 > length[i]:
                length[i] = length[j] + 1
        if length[i] > length[last]:
            last = i
    first = max(0, last - length[last])
    return lrs[first + (last - first) // 2]


def steepest(lrs: list[float], smoothed: list[float]) -> float:
    """The rate where the smoothed loss falls fastest against log(rate), before its lowest point."""
    end = max(2, smoothed.index(min(smoothed)) + 1)
    slopes = [(smoothed[i + 1] - smoothed[i]) / math.log(lrs[i + 1] / lrs[i]) for i in range(min(end, len(lrs)) - 1)]
    return lrs[slopes.index(min(slopes))]


def minimum_tenth(lrs: list[float], smoothed: list[float]) -> float:
    return lrs[smoothed.index(min(smoothed))] / 10


def write_lr_find(found: LrFind, path: Path) -> Path:
    """The measured curve as a CSV (lr, loss, smoothed), which plot_lr_find draws."""
    rows = [{"lr": lr, "loss": loss, "smoothed": smooth} for lr, loss, smooth in
            zip(found.lrs, found.losses, found.smoothed, strict=True)]  # fmt: skip
    write_table(path, list(COLUMNS), rows)
    return path

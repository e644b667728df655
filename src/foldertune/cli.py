"""The command line: one table from sub-command to function; user errors become one line and exit code 2.

    foldertune train [DATA] [--model mobilenet_v2] [--mode finetune] [--epochs 10] ...
    foldertune check DATA|MANIFEST|RUN [--fast|--deep] [--labels [--fix-manifest OUT.csv [--relabel]]]
                     [--out check.csv] [--quarantine DIR | --restore DIR]
    foldertune split DATA --val 0.2 [--test 0.1] [--seed 0] [--out DIR --copy|--link]
    foldertune predict RUN|CHECKPOINT|MODEL.onnx PATH... [--topk 5] [--out preds.csv|preds.json]
    foldertune predict RUN|CHECKPOINT|MODEL.onnx VIDEO [--out annotated.mp4] | --camera N
    foldertune export RUN|CHECKPOINT [--format onnx|torchscript] [--opset N] [--dynamic-batch] [--half | --int8]
    foldertune serve RUN|CHECKPOINT|MODEL.onnx [--host 127.0.0.1] [--port 8000] [--max-upload-mb 10] [--token T]
    foldertune evaluate RUN|CHECKPOINT [DATA] [--split val|test]
    foldertune explain RUN|CHECKPOINT IMAGE... [--out DIR] [--class NAME]
    foldertune plot RUN [--format png|pdf|svg]
    foldertune compare RUN RUN ...
    foldertune report RUN
    foldertune models

Every sub-command's --help lists its flags with defaults and an example. `train`'s flags are built from the fields of
config.py's dataclasses (name, type, choices, default, help); TRAIN_GROUPS only arranges them.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import difflib
import functools
import gc
import itertools
import json
import os
import sys
import typing
import warnings
from pathlib import Path

from foldertune import __version__
from foldertune.config import (
    CHOICES,
    DEFAULT_EMA_DECAY,
    DEVICES,
    NEGATED,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    field_docs,
    flag,
    flat_setting,
)
from foldertune.deploy import (
    EXPORT_FORMATS,
    HALF_MIN_AGREEMENT,
    INT8_MAX_ACCURACY_DROP,
    INT8_MIN_AGREEMENT,
    check_export_options,
)
from foldertune.errors import UserError
from foldertune.runs.atomic import check_output
from foldertune.runs.folder import FIGURE_FORMATS

# Flags of `train` that may accompany --resume; everything else comes from the run's config.json.
RESUME_FLAGS = {"resume", "epochs", "device", "workers", "quiet", "verbose"}


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is reported in one line (and exit code 2) instead of the whole usage."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, allow_abbrev=False, **kwargs)  # --epoch must not silently mean --epochs

    def error(self, message: str) -> None:
        if message.startswith("unrecognized arguments"):
            known = [option for action in self._actions for option in action.option_strings]
            unknown = [word.split("=")[0] for word in message.split(": ", 1)[1].split() if word.startswith("-")]
            close = difflib.get_close_matches(unknown[0], known, n=1) if unknown else []
            if close:
                message += f"; did you mean {close[0]}?"
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        raise SystemExit(2)
    if unknown:  # reported by the sub-command's parser, which knows its flags and can suggest one
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    from foldertune.training.interrupt import TrainingStopped

    speaks = os.environ.get("RANK", "0") == "0"  # under torchrun, one process reports for all
    warnings.showwarning = functools.partial(_show_warning, command=args.command)
    try:
        args.handler(args)
        return
    except UserError as error:
        code, message = 2, f"foldertune {args.command}: error: {error}"
    except TrainingStopped as stopped:  # a signal (saved cleanly) or a dead loader process; the run can go on
        code, message = stopped.exit_code, f"foldertune {args.command}: {stopped}"
    except BrokenPipeError:  # the reader went away (`foldertune check ... | head`): stop without a word, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # what is still buffered goes nowhere
        code, speaks = 1, False
    except OSError as error:  # a path of the user's that cannot be read or written: the path and the reason
        if error.filename is None:
            raise
        from foldertune.runs.atomic import describe_os_error

        code, message = 2, f"foldertune {args.command}: error: {describe_os_error(error)}"
    except KeyboardInterrupt as stopped:  # Ctrl-C outside training, or a second stop signal during it
        code, message, speaks = getattr(stopped, "exit_code", 130), f"\nfoldertune {args.command}: interrupted", True
    if speaks:
        print(message, file=sys.stderr)
    # Out here the exception is gone, and with it the frames that hold the loaders: their worker processes are
    # closed now, not during the interpreter's shutdown (where a dead worker's queue printed errors to nowhere).
    gc.collect()
    raise SystemExit(code)


def run() -> None:
    """The `foldertune` command (and `python -m foldertune`): `main`, then, when it succeeded, an exit that skips the
    interpreter's teardown of every loaded module (1.7 s of a `train` run's end, with torch, scikit-learn and
    matplotlib loaded). The exit handlers still run and the output is flushed first; files are closed by then."""
    main()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # a closed pipe (`foldertune predict ... | head`): nothing more to say
            stream.flush()
    os._exit(0)


def _show_warning(message, category, filename, lineno, file=None, line=None, *, command: str) -> None:
    """A warning, ours or a library's, as one line on stderr (Python's own format adds the file and source line)."""
    text = (str(message).strip().splitlines() or [category.__name__])[0]
    print(f"foldertune {command}: warning: {text}", file=file or sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="foldertune",
        description="Train, evaluate and use image classifiers from a folder of images (one sub-folder per class).",
        epilog="Run 'foldertune COMMAND --help' for a command's flags and examples.",
    )
    parser.add_argument("--version", action="version", version=f"foldertune {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command", parser_class=_Parser)
    parser.commands = {}
    for name, (add_arguments, handler, summary, example) in COMMANDS.items():
        sub = commands.add_parser(
            name,
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
            argument_default=argparse.SUPPRESS if name in ("train", "lr-find") else None,
        )
        add_arguments(sub)
        sub.set_defaults(handler=handler, command=name)
        parser.commands[name] = sub
    return parser


# ---------------------------------------------------------------------------------------------------- train


# `train`'s flags are the fields of config.py's dataclasses: the flag's name (`flag`), type (the annotation), choices
# (`CHOICES`), default and help (the field's docstring) come from there. This table adds only how the help shows
# them: the argument groups, in order, and each value's metavar (None: argparse's own, {a,b,c} for choices).
TRAIN_GROUPS = {
    "model": {"backbone": "MODEL", "mode": None, "weights": "FILE", "pretrained": None},
    "data": {"root": None, "val_fraction": "F", "test_fraction": "F", "manifest": "CSV", "img_size": "N",
             "workers": "N", "cache": None, "cache_dir": "DIR", "decode": None},
    "training": {"epochs": "N", "batch_size": "N", "lr": "X", "weight_decay": "X", "optimizer": None,
                 "scheduler": None, "warmup_epochs": "E", "label_smoothing": "X", "augment": None, "ema": "DECAY",
                 "head_warmup": "N", "layer_decay": "F", "balance": None, "patience": "N",
                 "best_metric": None,
                 "seed": "N", "device": None, "precision": None, "compile": None},
    "linear mode": {"feature_cache": None, "feature_views": "N"},
    "cross-validation": {"folds": "K", "refit": None},
    "output": {"project": "DIR", "run_name": "NAME", "resume": "RUN", "report": None, "quiet": None,
               "verbose": None},
    "experiment tracking (optional extras)": {"wandb": "PROJECT", "tensorboard": None},
}  # fmt: skip
WANDB_PROJECT = "foldertune"  # --wandb given without a project name

# The exceptions, both ways. Flags of `train` that are not settings of a run (config.json does not hold them):
TRAIN_ONLY_FLAGS = {
    "resume": {
        "help": "continue RUN from its last.pt (with --epochs to extend it); auto: continue the run --name names "
        "if it exists (same settings) and is unfinished, else start it"
    },
    "quiet": {"action": "store_true", "help": "no progress bars; one line per epoch (for log files)"},
    "verbose": {
        "action": "store_true",
        "help": "also print where the final evaluation and report spent their time, and "
        "how many depthwise layers train with the faster bf16 backward on a CPU",
    },
}
# Settings without a flag, and why:
NO_FLAG = {
    "max_pixels": "a safety limit for the Python API only: PIL refuses larger images anyway, and check, predict, "
    "evaluate and serve always read with the default limit, so a flag could only make train refuse images that "
    "the other commands accept.",
}


def add_train_arguments(p: argparse.ArgumentParser, *, leave_out: frozenset[str] = frozenset()) -> None:
    # The parser's defaults are SUPPRESSed so that only the flags a user typed reach RunConfig (and --resume can spot
    # extras); the help shows the dataclasses' defaults instead.
    settings = {}
    for klass in (DataConfig, ModelConfig, TrainConfig, RunConfig):
        hints, docs = typing.get_type_hints(klass), field_docs(klass)
        settings.update({f.name: (f, hints[f.name], docs.get(f.name, "")) for f in dataclasses.fields(klass)})
    for title, names in TRAIN_GROUPS.items():
        group = p.add_argument_group(title)
        for name, metavar in names.items():
            if name in leave_out:
                continue
            if name in TRAIN_ONLY_FLAGS:
                group.add_argument("--" + name, **({"metavar": metavar} if metavar else {}), **TRAIN_ONLY_FLAGS[name])
            else:
                _add_setting(p, group, name, *settings[name], metavar)


def _add_setting(p, group, name: str, setting: dataclasses.Field, annotation, doc: str, metavar: str | None) -> None:
    """One setting's flag: its name from `flag`, its type from the annotation, choices from CHOICES, help from `doc`."""
    option = flag(name)
    kind = next((k for k in typing.get_args(annotation) if k is not type(None)), annotation)  # X | None -> X
    if kind is bool:  # a switch; --no-X for a setting that is on by default
        arguments = {"dest": name, "action": "store_false" if setting.default else "store_true"}
    elif name in CHOICES:
        arguments = {"dest": name, "choices": CHOICES[name]}
    else:
        arguments = {"dest": name, "metavar": metavar, **({} if kind is str else {"type": kind})}
    if name == "wandb":
        arguments.update(nargs="?", const=WANDB_PROJECT)
    if name == "ema":  # --ema alone: the default decay
        arguments.update(nargs="?", const=DEFAULT_EMA_DECAY)
    if name == "lr":  # a number, or auto: the learning-rate range test chooses it (training/lr_find.py)
        arguments.update(type=_learning_rate)
        doc = doc.replace(
            "Peak learning rate;", "Peak learning rate, or auto: run lr-find first and use its suggestion;"
        )
    if not option.startswith("-"):  # DATA, the one positional; its default is this command's (and ft.train's)
        group, option, arguments = p, name, {"nargs": "?", "metavar": option}
        doc += " None: the bundled sample photos."
    help_text = _setting_help(doc, setting.default, const=arguments.get("const"), option=option)
    group.add_argument(option, help=help_text.replace("%", "%%"), **arguments)  # argparse formats help with %


def _learning_rate(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number or auto; got {text!r}") from None


def _setting_help(doc: str, default: object, *, const: object, option: str) -> str:
    """A field's docstring as a flag's help, ending in "(default: ...)": the field's default, or what the docstring's
    closing "None: ..." says (for a default of None); a --no-X flag's help is the docstring's closing "False: ..."."""
    meaning, _, other = doc.replace("`", "'").rpartition("None: " if default is None else "False: ")
    if not meaning:
        meaning, other = other, ""
    meaning, other = _as_help(meaning), _as_help(other)
    if default is True:
        return f"{other} (default: {meaning})"
    if default is False:
        return meaning
    if default is None:
        shown = other + (f"; {option} alone: {const}" if const else "")
        return f"{meaning} (default: {shown})" if shown else meaning
    return f"{meaning} (default: {default:g})" if isinstance(default, float) else f"{meaning} (default: {default})"


def _as_help(sentence: str) -> str:
    """'Share of each class.' -> 'share of each class': argparse's style; names such as DataLoader keep their case."""
    sentence = sentence.strip().removesuffix(";").removesuffix(".")
    word = sentence.split(" ", 1)[0]
    return sentence[:1].lower() + sentence[1:] if word[1:] == word[1:].lower() else sentence


def run_train(args: argparse.Namespace) -> None:
    from foldertune.data import sample_data_path
    from foldertune.runs.folder import check_new_run
    from foldertune.training.prepare import prepare_data

    given = {key: value for key, value in vars(args).items() if key not in ("handler", "command")}
    quiet = given.pop("quiet", False)
    verbose = given.pop("verbose", False)
    resume_target = given.pop("resume", None)
    if resume_target is not None and resume_target != "auto":
        changed = _changed_on_resume(Path(resume_target).expanduser(), given)
        if changed:
            names = ", ".join(changed)
            raise UserError(f"{names} cannot change when resuming (the run keeps its config.json); drop "
                            f"{'it' if len(changed) == 1 else 'them'}.")  # fmt: skip
        _resume(_resume_target(resume_target), given, quiet, verbose)  # a mistaken RUN is reported before torch loads
        return
    if given.get("root") is None and not given.get("manifest"):
        given["root"] = str(sample_data_path())
        print(f"no DATA given: training on the bundled sample photos in {given['root']}")
    lr_auto = given.get("lr") == "auto"
    if lr_auto:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise UserError("--lr auto does not run under torchrun: run `foldertune lr-find` first and pass its --lr.")
        del given["lr"]
    cfg = RunConfig.from_flat(**given)
    if resume_target == "auto":  # the same command after a requeue: continue the run it started, if there is one
        run = _auto_resume_target(cfg)
        if run is not None:
            _resume(run, given, quiet, verbose, finished_ok=True)
            return
    from foldertune.training.trackers import require_trackers

    require_trackers(cfg)
    data = None
    with _collector_paused():
        if int(os.environ.get("WORLD_SIZE", "1")) == 1:  # under torchrun, rank 0 alone prepares the data, in fit
            check_new_run(cfg)
            if cfg.model.pretrained and not cfg.model.weights:  # found or fetched now: missing weights show first
                from foldertune.models.registry import get_backbone
                from foldertune.models.weight_files import fetch_weights_file

                fetch_weights_file(get_backbone(cfg.model.backbone))
            data = prepare_data(cfg.data, seed=cfg.train.seed, progress=not quiet)  # mistakes show before torch loads
        import foldertune.training.fit  # noqa: F401 (torch, torchvision: 340,000 objects the collector tracks)
    if lr_auto:
        from foldertune.training.range_test import with_found_lr

        cfg = with_found_lr(cfg, data=data, quiet=quiet)
    if cfg.train.folds:
        from foldertune.training.cross_validation import cross_validate

        cross_validate(cfg, data=data, quiet=quiet)
        return
    from foldertune.training.fit import fit

    fit(cfg, data=data, quiet=quiet, verbose=verbose)


@contextlib.contextmanager
def _collector_paused():
    """Python's cycle collector off while a run's data and torch load, then everything made so far frozen (left out
    of later collections): reference counting frees all but cycles, and on a folder of 100,000 images the collector
    would otherwise run hundreds of times over a growing heap (0.8 CPU s of 6 before the first step). These objects
    live as long as the command anyway; the loader workers forked later share their pages, which the collector
    then never walks. The API (`ft.train` in a notebook) leaves the collector alone."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _resume_target(path: str):
    """The run --resume names: a cross-validation run as it is (its folds hold the checkpoints), else one with a
    last.pt to continue from."""
    from foldertune.runs.folder import RunFolder, resumable_run

    run = RunFolder(Path(path).expanduser())
    return run if run.folds() else resumable_run(path)


def _resume(run, given: dict, quiet: bool, verbose: bool, *, finished_ok: bool = False) -> None:
    """`train --resume RUN` (or --resume auto finding its run): continue it; with `finished_ok`, a finished run is
    reported and left as it is."""
    from foldertune.training.cross_validation import resume_cross_validation
    from foldertune.training.fit import RunFinished, resume

    how = resume_cross_validation if run.folds() else resume
    try:
        options = {} if run.folds() else {"verbose": verbose}  # the folds' runs print their own summaries
        how(run.path, epochs=given.get("epochs"), device=given.get("device"), workers=given.get("workers"),
            quiet=quiet, **options)  # fmt: skip
    except RunFinished as finished:
        if not finished_ok:
            raise
        if os.environ.get("RANK", "0") == "0":
            print(f"--resume auto: nothing left to do: {finished}")


def _auto_resume_target(cfg: RunConfig):
    """--resume auto: the run folder --name names when it exists with the same settings (then it continues), None
    when it does not exist yet (then it starts)."""
    from foldertune.runs.folder import RunFolder, resumable_run

    if cfg.run_name is None:
        raise UserError("--resume auto needs --name NAME: the run to continue if it exists, or to start.")
    run = RunFolder(Path(cfg.project).expanduser() / cfg.run_name)
    if not run.path.exists():
        return None
    if not run.is_run():
        raise UserError(f"--resume auto: '{run.path}' exists but is not a foldertune run folder; pick another --name.")
    differences = _setting_differences(run.config()["settings"], cfg.to_dict())
    if differences:
        raise UserError(
            f"--resume auto: run '{run.path}' was started with other settings ({'; '.join(differences[:3])}); use "
            "its settings, or another --name for a new run."
        )
    if run.folds():  # a cross-validation run: its folds say what is left to do
        return run
    if not run.last.is_file():  # stopped before its first epoch ended: nothing to continue, so it starts again
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone moves it
            aside = next(run.path.with_name(f"{run.path.name}.unstarted-{n}") for n in itertools.count(1)
                         if not run.path.with_name(f"{run.path.name}.unstarted-{n}").exists())  # fmt: skip
            run.path.rename(aside)
            print(f"--resume auto: run '{run.path}' stopped before its first epoch ended; starting it again (what "
                  f"it had written is kept in '{aside}')")  # fmt: skip
        return None
    return resumable_run(run.path)


def _changed_on_resume(run: Path, given: dict) -> list[str]:
    """The flags of `given` (argparse's names) other than RESUME_FLAGS that set something other than the settings in
    the run's config.json (all of them when it has none): `--resume RUN --no-report` on a run trained with
    --no-report changes nothing."""
    try:
        settings = json.loads((run / "config.json").read_text(encoding="utf-8"))["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        settings = {}  # not a run: _resume_target says so when no flag is in the way
    saved = {key: value for key, value in settings.items() if not isinstance(value, dict)}
    for section in settings.values():
        if isinstance(section, dict):
            saved.update(section)
    changed = []
    for key, value in sorted(given.items()):
        if key in RESUME_FLAGS:
            continue
        name, value = flat_setting(key, value)
        if name not in saved or saved[name] != value:
            changed.append(flag(name))
    return changed


def _shown(key: str, value: object) -> str:
    if key in NEGATED.values():  # set by --no-pretrained / --no-report: say whether that flag was given
        return "not given" if value else "given"
    return "not given" if value is None else str(value)


def _setting_differences(saved: dict, given: dict) -> list[str]:
    """'--lr 0.001 there, 0.01 here' for every setting that differs, except those --resume may change."""
    differences = []
    for key in sorted(set(saved) | set(given)):
        there, here = saved.get(key), given.get(key)
        if isinstance(there, dict) and isinstance(here, dict):
            differences += _setting_differences(there, here)
        elif there != here and key not in RESUME_FLAGS:
            differences.append(f"{flag(key)} {_shown(key, there)} there, {_shown(key, here)} here")
    return differences


# ---------------------------------------------------------------------------------------------------- split


def add_split_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", metavar="DATA", help="folder with one sub-folder per class")
    p.add_argument("--val", type=float, default=0.2, metavar="F", help="validation share of each class (default: 0.2)")
    p.add_argument("--test", type=float, default=0.0, metavar="F", help="test share of each class (default: 0)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="shuffle seed (default: 0)")
    p.add_argument("--out", metavar="DIR", help="also build DIR/train, DIR/val (and DIR/test) class folders")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--copy", dest="how", action="store_const", const="copy", help="with --out: copy files (default)")
    how.add_argument("--link", dest="how", action="store_const", const="link", help="with --out: symbolic links")
    p.add_argument(
        "--manifest", metavar="CSV", help="where to write the manifest (default: DIR/split.csv or ./split.csv)"
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing manifest file (never images)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_split(args: argparse.Namespace) -> None:
    from foldertune.data.check import find_duplicates
    from foldertune.data.near_duplicates import copy_groups, find_near_pairs
    from foldertune.data.scan import check_layout, scan_folder
    from foldertune.data.split import (
        assign_splits,
        check_seed,
        format_counts,
        materialize,
        split_counts,
        write_manifest,
    )
    from foldertune.runs.tables import write_table

    DataConfig(root=args.data, val_fraction=args.val, test_fraction=args.test)  # validates the fractions
    check_seed(args.seed)  # assign_splits checks too, after the scan
    if args.how and not args.out:
        raise UserError(f"--{args.how} needs --out DIR: the folder to build train/ and val/ in.")
    manifest = Path(args.manifest or (Path(args.out) / "split.csv" if args.out else "split.csv"))
    counts_path = manifest.with_name(manifest.stem + "_counts.csv")
    for path in (manifest, counts_path):  # named by the flag that chose the place
        check_output(path, "--out" if args.out and not args.manifest else "--manifest", force=args.force)
    scan = scan_folder(args.data, progress=not args.quiet)
    if scan.presplit:
        raise UserError(f"'{scan.root}' is already split into train/val folders; train on it directly.")
    check_layout(scan, min_classes=2)  # as train and check: one class is a folder one level too deep
    if not scan.classes:
        raise UserError(f"no usable images found in '{scan.root}'; it needs one sub-folder per class.")
    copies = find_duplicates(scan.images, scan.info, progress=not args.quiet)
    near = find_near_pairs([record.path for record in scan.images], progress=not args.quiet)
    together = copy_groups(scan.images, copies, near)  # copies, exact or near, go to one split
    records, warnings = assign_splits(
        scan.images, val_fraction=args.val, test_fraction=args.test, seed=args.seed, together=together
    )
    if args.out:
        materialize(records, scan.root, args.out, how=args.how or "copy")
        print(f"{'linked' if args.how == 'link' else 'copied'} {len(records)} images into {Path(args.out).absolute()}")
    write_manifest(manifest, records)
    rows = split_counts(records)
    write_table(counts_path, ["class", "train", "val", "test", "total"], rows)
    print(format_counts(rows))
    for warning in warnings:
        print(f"warning: {warning}")
    for skipped in scan.unreadable:
        print(f"skipped unreadable {skipped.path}: {skipped.reason}")
    print(f"manifest: {manifest.absolute()}  counts: {counts_path.absolute()}")


# ---------------------------------------------------------------------------------------------------- check


def add_check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="?", metavar="DATA", help="a data folder, a split manifest (.csv) or a run folder")
    p.add_argument(
        "--fast", action="store_true", help="read headers only: thousands a second, but a file cut short passes"
    )
    p.add_argument(
        "--deep", action="store_true", help="decode every image at full size (default: as training reads it)"
    )
    p.add_argument("--out", metavar="CSV", help="where to write one row per file (default: ./check.csv)")
    p.add_argument("--html", metavar="PAGE", help="where to write the page with thumbnails (default: --out as .html)")
    p.add_argument("--force", action="store_true", help="replace existing output files (never images)")
    p.add_argument(
        "--quarantine",
        metavar="DIR",
        help="move unreadable files to DIR (same relative paths, with DIR/quarantine.csv to undo); implies --deep",
    )
    p.add_argument("--restore", metavar="DIR", help="move the files that --quarantine DIR moved back where they were")
    p.add_argument(
        "--min-side", type=int, default=32, metavar="PX", help="shorter side below which an image is tiny (default: 32)"
    )
    p.add_argument(
        "--max-aspect", type=float, default=3.0, metavar="R", help="longer/shorter side above which an image is "
        "elongated (default: 3)",
    )  # fmt: skip
    p.add_argument("--workers", type=int, metavar="N", help="threads reading files (default: 2 per CPU core, max 16)")
    labels = p.add_argument_group("label check (--labels)")
    labels.add_argument(
        "--labels", action="store_true", help="also find suspected label errors, near copies by the backbone's "
        "features, and outliers (runs the pretrained backbone once per image, through the feature cache)",
    )  # fmt: skip
    labels.add_argument("--model", default=None, metavar="NAME", help="backbone that judges (default: mobilenet_v2)")
    labels.add_argument("--img-size", type=int, metavar="PX", help="its input size (default: the backbone's own)")
    labels.add_argument("--folds", type=int, metavar="K", help="out-of-fold linear heads (default: 5)")
    labels.add_argument(
        "--min-label-score", type=float, default=None, metavar="S",
        help="of the likeliest label errors (as many as the confident-joint count estimates), flag those whose "
        "own class has at most 1-S and another is likelier (default: 0.5)",
    )  # fmt: skip
    labels.add_argument("--device", help="where the backbone runs: auto, cpu, cuda, mps (default: auto)")
    labels.add_argument(
        "--fix-manifest", metavar="OUT.csv", help="write a path,class,split manifest without the suspected label "
        "errors, for train --manifest (the data folder is never written)",
    )  # fmt: skip
    labels.add_argument("--relabel", action="store_true", help="with --fix-manifest: give them the suggested class")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_check(args: argparse.Namespace) -> None:
    import time

    from foldertune.data.check import CHECK_COLUMNS, check_data_path, check_source, decode_level
    from foldertune.reporting.check_page import write_check_page
    from foldertune.runs.atomic import is_inside
    from foldertune.runs.folder import RunFolder
    from foldertune.runs.tables import write_table

    if args.restore:
        if args.data or args.quarantine:
            raise UserError("--restore DIR takes no DATA and no --quarantine; run it on its own.")
        _restore(args.restore)
        return
    if not args.data:
        raise UserError("check needs DATA: a data folder, a split manifest or a run folder.")
    data = Path(args.data).expanduser()
    check_data_path(data)  # before the outputs: a mistyped DATA is the first thing to hear about
    is_run = RunFolder(data).is_run()
    out = Path(args.out or "check.csv")  # never RUN/data_check.csv: --resume compares the data with that one
    if not is_run and data.is_dir() and is_inside(out, data):
        raise UserError(f"--out '{out}' is inside the data folder; check never writes there: pick a path outside it.")
    if out.exists() and not _first_line(out).startswith(",".join(CHECK_COLUMNS[:5])):
        raise UserError(f"--out '{out}' exists and is not a check CSV; pass another --out so it is not overwritten.")
    check_output(out, "--out", force=args.force, inputs=(data,))
    page = Path(args.html).expanduser() if args.html else out.with_suffix(".html")
    if not is_run and data.is_dir() and is_inside(page, data):
        raise UserError(f"--html '{page}' is inside the data folder; check never writes there: pick a path outside it.")
    check_output(page, "--html", force=args.force, inputs=(data,))
    if args.quarantine and args.fast:
        raise UserError("--quarantine decodes every image to find the unreadable ones; drop --fast.")
    if args.quarantine and (is_run or not data.is_dir()):
        raise UserError("--quarantine needs DATA to be a data folder (the one the files are moved out of).")
    if args.quarantine and (is_inside(args.quarantine, data) or is_inside(data, args.quarantine)):
        raise UserError(
            f"--quarantine '{args.quarantine}' is inside the data folder (or holds it); pick a folder beside it."
        )

    decode = decode_level(fast=args.fast, deep=args.deep or bool(args.quarantine))
    label_options = fix_manifest = None
    given = {"model": args.model, "img_size": args.img_size, "folds": args.folds,
             "min_label_score": args.min_label_score, "device": args.device}  # fmt: skip
    if args.labels or args.fix_manifest or args.relabel or any(v is not None for v in given.values()):
        from foldertune.training.label_check import check_fix_options, check_output_path, label_check_options

        check_fix_options(labels=args.labels, fix_manifest=args.fix_manifest, relabel=args.relabel, label_options=given)
        label_options = label_check_options(**given)
        if args.fix_manifest:
            fix_manifest = check_output_path(args.fix_manifest, data, flag="--fix-manifest", force=args.force)
    started = time.perf_counter()
    report = check_source(data, decode=decode, tiny_side=args.min_side, max_aspect=args.max_aspect,
                          workers=args.workers, progress=not args.quiet)  # fmt: skip
    if label_options is not None:
        from foldertune.training.label_check import check_labels

        check_labels(report, label_options, progress=not args.quiet)
    seconds = time.perf_counter() - started
    files = len(report.records) + report.count("unreadable")
    print(report.summary())
    write_table(out, CHECK_COLUMNS, report.rows())
    write_check_page(report, page)
    print(
        f"checked {files} file(s) in {seconds:.1f} s ({files / max(seconds, 1e-9):.0f}/s); every file: {out.absolute()}"
        f"\nto look at: {page.absolute()}"
    )
    if is_run and report.labels_checked:
        run = RunFolder(data)
        write_check_page(report, run.check_page_file)  # the report links it
        if run.report_file.exists():
            from foldertune.reporting.html_report import write_report

            write_report(run.path, log=lambda *_: None)
        print(f"label check of the run: {run.check_page_file.absolute()}, linked from {run.report_file.name}")
    if fix_manifest is not None:
        from foldertune.training.label_check import write_fix_manifest

        counts = write_fix_manifest(report, fix_manifest, relabel=args.relabel)
        changed = f"{counts['relabelled']} relabelled" if args.relabel else f"{counts['left out']} left out"
        print(f"fix manifest: {counts['images']} images, {changed} (suspected label errors): {fix_manifest.absolute()}"
              f"\ntrain on it: foldertune train --manifest {fix_manifest}")  # fmt: skip
    unreadable = [s for s in report.skipped if s.problem == "unreadable"]
    if args.quarantine and unreadable:
        from foldertune.data.quarantine import quarantine

        moves = quarantine(unreadable, root=report.source, folder=args.quarantine)
        for move in moves:
            print(f"{'moved' if move.done else 'kept'} {move.source}" + (f" ({move.note})" if move.note else ""))
        done = sum(move.done for move in moves)
        print(f"quarantined {done} of {len(moves)} unreadable file(s) in {Path(args.quarantine).absolute()}; "
              f"undo: foldertune check --restore {args.quarantine}")  # fmt: skip
        unreadable = [s for s, move in zip(unreadable, moves, strict=True) if not move.done]
    if unreadable or report.count("leak") or report.count("label-issue"):
        raise SystemExit(1)  # for scripts: files training skips, validation images it trains on, or wrong labels


def _first_line(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.readline().rstrip("\r\n")


def _restore(folder: str) -> None:
    from foldertune.data.quarantine import restore

    moves = restore(folder)
    for move in moves:
        print(f"{'restored' if move.done else 'kept'} {move.target}" + (f" ({move.note})" if move.note else ""))
    done = sum(move.done for move in moves)
    print(f"restored {done} of {len(moves)} file(s)")
    if done < len(moves):
        raise SystemExit(1)


# ---------------------------------------------------------------------------------------------------- predict


def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "source",
        metavar="RUN|CHECKPOINT|MODEL.onnx",
        help="a run folder (uses its best.pt), a .pt checkpoint, or an exported .onnx (no PyTorch needed)",
    )
    p.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="image files and folders (searched recursively), or one video (.mp4, .avi, .mov, ...)",
    )
    p.add_argument("--camera", type=int, metavar="N", help="predict live on camera N in a window (q to quit)")
    p.add_argument("--topk", type=int, default=5, metavar="K", help="classes to list per image (default: 5)")
    p.add_argument("--out", metavar="FILE", help="also write the predictions to FILE.csv or FILE.json")
    p.add_argument("--force", action="store_true", help="replace --out if it exists (default: refuse)")
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="images per forward pass (default: 64)")
    p.add_argument(
        "--min-confidence",
        type=float,
        metavar="P",
        help="answer 'unknown' when the top probability is below P (0 <= P < 1; the report suggests one; default: "
        "always the top class)",
    )
    p.add_argument("--tta", action="store_true", help="average over the image and its mirror image (2x the time)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="(default: auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bar; with --out, no table either")


def run_predict(args: argparse.Namespace) -> None:
    from foldertune.inference.prediction import check_predict_options

    check_predict_options(
        topk=args.topk, batch_size=args.batch_size, min_confidence=args.min_confidence, flags=True
    )  # fmt: skip  (the classifiers check too)
    from foldertune.deploy.video import is_video

    videos = [path for path in args.paths if is_video(path)]
    if args.camera is None and not args.paths:
        raise UserError("predict needs PATH: image files, folders or a video (or --camera N).")
    if videos and len(args.paths) > 1:
        raise UserError(
            f"give one video at a time, without images (got {len(args.paths)} paths, {len(videos)} "
            f"{'video' if len(videos) == 1 else 'videos'})."
        )
    if (videos or args.camera is not None) and (args.min_confidence is not None or args.tta):
        raise UserError("--min-confidence and --tta are for image files; leave them out for a video or --camera.")
    if videos and args.out and Path(args.out).suffix.lower() != ".mp4":
        raise UserError(f"--out '{args.out}' must end in .mp4 for a video.")
    if not videos and args.out and Path(args.out).suffix.lower() not in (".csv", ".json"):
        raise UserError(f"--out '{args.out}' must end in .csv or .json.")
    if args.out:
        check_output(args.out, "--out", force=args.force, inputs=tuple(args.paths))
    if Path(args.source).suffix.lower() == ".onnx":  # ONNX Runtime, numpy and Pillow: torch is never imported
        from foldertune.deploy.onnx_classifier import OnnxClassifier

        classifier = OnnxClassifier(args.source)
    else:
        from foldertune.inference.classifier import Classifier

        classifier = Classifier.from_path(args.source, device=args.device)
    check_predict_options(topk=args.topk, min_confidence=args.min_confidence, classes=classifier.classes, flags=True)
    if args.camera is not None or videos:
        from foldertune.deploy.video import annotate_video, watch_camera

        if args.camera is not None:
            watch_camera(classifier, args.camera)
            return
        out = Path(args.out or f"{Path(videos[0]).stem}_annotated.mp4")
        annotate_video(classifier, videos[0], out, progress=not args.quiet)
        print(f"wrote {out.absolute()} and {out.with_suffix('.csv').absolute()} (one row per frame)")
        return
    predictions = classifier.predict_files(args.paths, topk=args.topk, batch_size=args.batch_size,
                                           progress=not args.quiet, min_confidence=args.min_confidence,
                                           tta=args.tta)  # fmt: skip
    if not (args.quiet and args.out):
        for p in predictions:
            if p.error:
                print(f"{p.path}\tERROR: {p.error}")
            else:
                unknown = f"unknown (below {args.min_confidence:g})  " if p.label != p.top_label else ""
                print(f"{p.path}\t{unknown}" + "  ".join(f"{label} {prob:.3f}" for label, prob in p.topk))
    if args.out:
        _write_predictions(Path(args.out), predictions, args.topk)
        print(f"wrote {len(predictions)} predictions to {Path(args.out).absolute()}")
    failed = sum(p.error is not None for p in predictions)
    if failed:
        print(f"{failed} of {len(predictions)} file(s) could not be read (listed above with ERROR)", file=sys.stderr)


def _write_predictions(path: Path, predictions, topk: int) -> None:
    from foldertune.runs.atomic import write_json
    from foldertune.runs.tables import write_table

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        records = [
            {"path": p.path, "label": p.label, "probability": p.probability, "top_label": p.top_label,
             "unknown_score": p.unknown_score, "error": p.error,
             "topk": [{"label": label, "probability": prob} for label, prob in p.topk]}
            for p in predictions
        ]  # fmt: skip
        write_json(path, records)
        return
    columns = ["path", "label", "probability", "top_label", "unknown_score"]
    for k in range(1, topk + 1):
        columns += [f"top{k}", f"p{k}"]
    columns.append("error")
    rows = []
    for p in predictions:
        row = {"path": p.path, "label": p.label or "", "top_label": p.top_label or "", "error": p.error or ""}
        row["probability"] = "" if p.probability is None else f"{p.probability:.6f}"
        row["unknown_score"] = "" if p.unknown_score is None else f"{p.unknown_score:.6f}"
        for k, (label, prob) in enumerate(p.topk, start=1):
            row[f"top{k}"], row[f"p{k}"] = label, f"{prob:.6f}"
        rows.append(row)
    write_table(path, columns, rows)


# ---------------------------------------------------------------------------------------------------- export


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="RUN|CHECKPOINT", help="a run folder (uses its best.pt) or a .pt checkpoint")
    p.add_argument("--format", dest="fmt", choices=EXPORT_FORMATS, default="onnx", help="(default: onnx)")
    p.add_argument("--out", metavar="FILE", help="(default: RUN/export/model.onnx; model-fp16.onnx with --half, "
                   "model-int8.onnx with --int8, model.torchscript.pt for TorchScript)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="replace the exported file if it exists (default: refuse)")
    p.add_argument("--opset", type=int, metavar="N", help="ONNX opset version (default: the exporter's)")
    p.add_argument("--dynamic-batch", action="store_true", help="any batch size (default: batch 1)")
    p.add_argument(
        "--half",
        action="store_true",
        help=f"fp16 weights (half the size; top-1 must still agree on {HALF_MIN_AGREEMENT:.0%}% of the images)",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="static int8 quantization for CPUs, calibrated on the run's training images (RUN/export/model-int8.onnx;"
        f" refused unless top-1 agrees on {INT8_MIN_AGREEMENT:.0%}% of the images and validation accuracy drops by at"
        f" most {INT8_MAX_ACCURACY_DROP * 100:.0f} point)",
    )
    p.add_argument(
        "--images",
        nargs="+",
        metavar="PATH",
        help="images for the parity check (default: the run's validation images, else the sample)",
    )


def run_export(args: argparse.Namespace) -> None:
    check_export_options(fmt=args.fmt, opset=args.opset, half=args.half, int8=args.int8)  # before torch loads
    from foldertune.deploy.exporting import ParityError, export_model

    try:
        result = export_model(args.source, fmt=args.fmt, out=args.out, force=args.force, opset=args.opset,
                              dynamic_batch=args.dynamic_batch, half=args.half, int8=args.int8,
                              images=args.images)  # fmt: skip
    except ParityError as error:
        print(f"foldertune export: the export failed its parity check: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"exported {result.path.absolute()}\nmetadata {result.metadata_path.absolute()}")


# ---------------------------------------------------------------------------------------------------- serve


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="RUN|CHECKPOINT|MODEL.onnx", help="a run folder, a .pt checkpoint or an .onnx")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="(default: 8000)")
    p.add_argument("--max-upload-mb", type=float, default=10, metavar="MB", help="largest request (default: 10)")
    p.add_argument("--token", metavar="TOKEN", help="require 'Authorization: Bearer TOKEN' on every route but the "
                   "page and /health (default: $FOLDERTUNE_TOKEN, else none)")  # fmt: skip
    p.add_argument(
        "--min-confidence",
        type=float,
        metavar="P",
        help="answer 'unknown' when the top probability is below P (0 <= P < 1; default: never)",
    )


def run_serve(args: argparse.Namespace) -> None:
    from foldertune.deploy.server import serve

    serve(args.source, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb, token=args.token,
          min_confidence=args.min_confidence)  # fmt: skip


# ---------------------------------------------------------------------------------------------------- evaluate


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="RUN|CHECKPOINT", help="a run folder (uses its best.pt) or a .pt checkpoint")
    p.add_argument("data", nargs="?", metavar="DATA", help="another image folder (default: the run's own split)")
    p.add_argument("--split", choices=["val", "test", "train"], default="val", help="which split (default: val)")
    p.add_argument("--out", metavar="DIR", help="evaluation folder (default: RUN/eval/SPLIT or RUN/eval/DATA-SPLIT)")
    p.add_argument(
        "--force",
        action="store_true",
        help="write into --out although it holds files (default: refuse; the run's own eval/ folders are replaced)",
    )
    p.add_argument("--no-figures", dest="figures", action="store_false", help="numbers only: no figures or maps")
    p.add_argument("--format", dest="fmt", choices=FIGURE_FORMATS, default="png", help="figure format")
    p.add_argument("--tta", action="store_true", help="average over the image and its mirror image (2x the time)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="(default: auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_evaluate(args: argparse.Namespace) -> None:
    from foldertune.api import evaluate

    # .__wrapped__: the function itself, whose sentences name flags (the API's keyword layer would name keywords)
    evaluate.__wrapped__(args.source, args.data, split=args.split, out=args.out, force=args.force, device=args.device,
             figures=args.figures, fmt=args.fmt, tta=args.tta, progress=not args.quiet)  # fmt: skip


# ---------------------------------------------------------------------------------------------------- explain


def add_explain_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="RUN|CHECKPOINT", help="a run folder (uses its best.pt) or a .pt checkpoint")
    p.add_argument("paths", nargs="+", metavar="IMAGE", help="image files or folders")
    p.add_argument("--out", metavar="DIR", default="cams", help="where the maps go (default: ./cams)")
    p.add_argument("--force", action="store_true", help="write into --out although it holds files (default: refuse)")
    p.add_argument("--class", dest="class_name", metavar="NAME", help="explain this class (default: the predicted)")
    p.add_argument("--format", dest="fmt", choices=FIGURE_FORMATS, default="png", help="figure format")
    p.add_argument("--device", choices=DEVICES, default="auto", help="(default: auto)")


def run_explain(args: argparse.Namespace) -> None:
    from foldertune.reporting.explanations import explain_files

    explain_files(args.source, args.paths, out=args.out, force=args.force, class_name=args.class_name,
                  device=args.device, fmt=args.fmt)  # fmt: skip


# ---------------------------------------------------------------------------------------------------- plot


def add_plot_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="a run folder")
    p.add_argument("--format", dest="fmt", choices=FIGURE_FORMATS, default="png", help="figure format")


def run_plot(args: argparse.Namespace) -> None:
    from foldertune.reporting.plots import plot_run

    for path in plot_run(args.run, fmt=args.fmt):
        print(path)


# ---------------------------------------------------------------------------------------------------- compare


def add_compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="two or more run folders")
    p.add_argument(
        "--out", metavar="DIR", default="compare", help="where compare.png and compare.csv go (default: ./compare)"
    )
    p.add_argument("--force", action="store_true", help="write into --out although it holds files (default: refuse)")
    p.add_argument("--format", dest="fmt", choices=FIGURE_FORMATS, default="png", help="figure format")


def run_compare(args: argparse.Namespace) -> None:
    from foldertune.api import compare

    compare.__wrapped__(args.runs, out=args.out, force=args.force, fmt=args.fmt)  # flags, not keywords (see evaluate)


# ---------------------------------------------------------------------------------------------------- lr-find


# train's flags that mean nothing to a range test, which trains for --steps at rates it chooses and keeps nothing
LR_FIND_LEAVES_OUT = frozenset({"epochs", "lr", "scheduler", "warmup_epochs", "patience", "best_metric", "compile",
                                "run_name", "resume", "report", "wandb", "tensorboard"})  # fmt: skip


def add_lr_find_arguments(p: argparse.ArgumentParser) -> None:
    add_train_arguments(p, leave_out=LR_FIND_LEAVES_OUT)  # the settings of the run the test is measured for
    group = p.add_argument_group("range test")
    group.add_argument("--start-lr", type=float, metavar="X", help="first learning rate (default: 1e-7)")
    group.add_argument("--end-lr", type=float, metavar="X", help="last learning rate (default: 10)")
    group.add_argument("--steps", type=int, metavar="N",
                       help="training steps, the rate growing exponentially (default: 100; fewer if the loss "
                            "diverges)")  # fmt: skip
    group.add_argument("--out", metavar="PNG", help="the plot (and a .csv of the curve beside it) (default: "
                       "PROJECT/lr-find-MODEL-MODE.png, redrawn each time)")  # fmt: skip
    group.add_argument("--force", action="store_true", help="replace --out if it exists")


LR_FIND_OPTIONS = ("start_lr", "end_lr", "steps")


def run_lr_find(args: argparse.Namespace) -> None:
    from foldertune.data import sample_data_path

    given = {key: value for key, value in vars(args).items() if key not in ("handler", "command")}
    quiet, out, force = given.pop("quiet", False), given.pop("out", None), given.pop("force", False)
    options = {key: given.pop(key) for key in LR_FIND_OPTIONS if key in given}
    if given.get("root") is None and not given.get("manifest"):
        given["root"] = str(sample_data_path())
        print(f"no DATA given: the range test runs on the bundled sample photos in {given['root']}")
    cfg = RunConfig.from_flat(**given)
    if out is not None:
        check_output(out, "--out", force=force)
    from foldertune.training.range_test import lr_find_and_plot

    found = lr_find_and_plot(cfg, out=out, quiet=quiet, **options)
    print(found.describe())


# ---------------------------------------------------------------------------------------------------- report


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="a run folder")


def run_report(args: argparse.Namespace) -> None:
    from foldertune.reporting.html_report import write_report

    write_report(args.run)


# ---------------------------------------------------------------------------------------------------- models


def add_models_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timm", metavar="PATTERN", default=None,
                   help="list timm's models with pretrained weights whose names match PATTERN (e.g. 'convnext*'), "
                        "for --model timm/NAME; needs pip install 'foldertune[timm]'")  # fmt: skip


def run_models(args: argparse.Namespace) -> None:
    from foldertune.models.registry import list_backbones
    from foldertune.models.weights import hub_checkpoint_dir

    if args.timm is not None:
        _list_timm_models(args.timm)
        return

    cache = hub_checkpoint_dir()
    print(f"{'backbone':<20}{'ImageNet top-1':>15}  {'weights file':<42}{'cached':<8}{'offline source'}")
    for b in list_backbones():
        cached = "yes" if (cache / b.weights_file).is_file() else "no"
        offline = "package index" if b.index_package else "-"
        print(f"{b.name:<20}{b.imagenet_top1:>14.1f}%  {b.weights_file:<42}{cached:<8}{offline}")
    print(f"weights cache: {cache}")


def _list_timm_models(pattern: str) -> None:
    from huggingface_hub import constants

    from foldertune.models.timm_backbones import cached_in_hub, list_pretrained, timm_backbone

    names = list_pretrained(pattern)
    if not names:
        raise UserError(f"--timm {pattern!r} matches no timm model with pretrained weights; try a wider pattern.")
    print(f"{'--model':<52}{'input':>7}  {'cached':<8}weights")
    for name in names:
        backbone = timm_backbone("timm/" + name)
        cached = "yes" if backbone.hf_hub_id and cached_in_hub(backbone.hf_hub_id) else "no"
        print(f"{backbone.name:<52}{backbone.preprocessing.crop_size:>7}  {cached:<8}{backbone.weights_source}")
    print(f"{len(names)} model(s); Hugging Face cache: {constants.HF_HUB_CACHE}")


COMMANDS = {
    "train": (
        add_train_arguments,
        run_train,
        "train a classifier on a folder of images",
        "foldertune train photos/ --model resnet18 --mode linear --epochs 5",
    ),
    "check": (
        add_check_arguments,
        run_check,
        "check a dataset: class counts, unreadable files, duplicates, leaks between splits, odd images",
        "foldertune check photos/ --deep --quarantine photos_quarantine/",
    ),
    "split": (
        add_split_arguments,
        run_split,
        "split a folder into train / val / test, stratified per class",
        "foldertune split photos/ --val 0.2 --test 0.1 --out photos_split --link",
    ),
    "predict": (
        add_predict_arguments,
        run_predict,
        "predict the class of images with a trained run or checkpoint",
        "foldertune predict runs/mobilenet_v2-finetune new_photos/ --out preds.csv",
    ),
    "export": (
        add_export_arguments,
        run_export,
        "export a checkpoint to ONNX or TorchScript, with its preprocessing, checked against PyTorch",
        "foldertune export runs/mobilenet_v2-finetune --format onnx --dynamic-batch",
    ),
    "serve": (
        add_serve_arguments,
        run_serve,
        "serve a model: a web page to drop photos on, and a JSON API (/predict, /classes, /health)",
        "foldertune serve runs/mobilenet_v2-finetune --port 8000",
    ),
    "evaluate": (
        add_evaluate_arguments,
        run_evaluate,
        "evaluate a checkpoint: every metric, per-class and prediction tables, figures, Grad-CAM maps",
        "foldertune evaluate runs/mobilenet_v2-finetune --split test",
    ),
    "explain": (
        add_explain_arguments,
        run_explain,
        "draw Grad-CAM maps: where the network looked in each image",
        "foldertune explain runs/mobilenet_v2-finetune photo.jpg --out cams/",
    ),
    "plot": (
        add_plot_arguments,
        run_plot,
        "redraw every figure of a run folder",
        "foldertune plot runs/mobilenet_v2-finetune --format pdf",
    ),
    "compare": (
        add_compare_arguments,
        run_compare,
        "overlay the validation curves of several runs and tabulate their best metrics and training time",
        "foldertune compare runs/resnet18-linear runs/resnet18-finetune runs/resnet18-scratch",
    ),
    "report": (
        add_report_arguments,
        run_report,
        "write the run's self-contained report.html",
        "foldertune report runs/mobilenet_v2-finetune",
    ),
    "lr-find": (
        add_lr_find_arguments,
        run_lr_find,
        "the learning-rate range test: loss against a growing learning rate, plotted, and a suggested --lr",
        "foldertune lr-find photos/ --mode linear",
    ),
    "models": (
        add_models_arguments,
        run_models,
        "list the backbones, their ImageNet accuracy and whether their weights are cached (--timm: timm's)",
        "foldertune models --timm 'convnext*'",
    ),
}

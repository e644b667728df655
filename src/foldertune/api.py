"""The Python API: `train` a run and `load` a trained classifier.

    import foldertune as ft
    run = ft.train(data="photos/", model="resnet18", mode="linear", epochs=5)   # -> Path('runs/resnet18-linear')
    clf = ft.load(run)
    clf.predict("photo.jpg").label
    ft.evaluate(run, split="test", no_figures=True)

One rule for keywords: each function takes the flags of its command (`foldertune evaluate --no-figures` is
`ft.evaluate(..., no_figures=True)`, `--format pdf` is `format="pdf"`), besides its own parameters. An unknown keyword
is an `UnknownKeyword` (a `TypeError` and a `UserError`) that suggests the closest one, and a mistake is reported
with the keyword's name, not the flag's. Heavy imports (torch, torchvision) happen inside the functions, so
`import foldertune` stays fast.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import os
import re
from pathlib import Path
from typing import Any

from foldertune.errors import UnknownKeyword, UserError, named_keywords, unknown_keyword


@functools.cache
def _flags(command: str) -> dict[str, argparse.Action]:
    """The flags of `foldertune COMMAND` by keyword: --no-figures -> 'no_figures'."""
    from foldertune.cli import build_parser

    actions = build_parser().commands[command]._actions
    return {
        option[2:].replace("-", "_"): action
        for action in actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }


def keywords(command: str, *, cli_only: dict[str, str] | None = None):
    """Give an API function the flags of `foldertune COMMAND` as keywords (see the module's docstring); `cli_only`
    maps flags that mean nothing in Python to why (said when one is given)."""
    cli_only = cli_only or {}

    def decorate(function):
        parameters = inspect.signature(function).parameters
        open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        named = [name for name, p in parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD]

        @functools.wraps(function)
        def call(*args, **given):
            flags = _flags(command)
            options = {}
            for key, value in given.items():
                if key in named or (open_ended and key not in cli_only):
                    options[key] = value
                elif key in cli_only:
                    raise UnknownKeyword(f"{key}= is for the command line only: {cli_only[key]}")
                elif key in flags:
                    options.update(_as_parameter(flags[key], value, parameters, function.__name__, key))
                else:
                    raise unknown_keyword(f"ft.{function.__name__}", key, named, list(flags))
            for key, value in options.items():  # a switch: "no" and 0 are not False
                if key in parameters and isinstance(parameters[key].default, bool) and not isinstance(value, bool):
                    raise UserError(f"ft.{function.__name__}()'s {key}= is True or False; got {value!r}.")
            try:
                return function(*args, **options)
            except UserError as error:
                error.args = (_in_keywords(str(error), flags),)
                raise

        call.command, call.cli_only = command, cli_only
        return call

    return decorate


def accepted_keywords(function) -> set[str]:
    """Every keyword an API function takes: its parameters, and its command's flags that set one of them."""
    parameters = inspect.signature(function.__wrapped__).parameters
    named = {name for name, p in parameters.items() if p.kind is not p.VAR_KEYWORD}
    open_ended = len(named) < len(parameters)
    takes = {
        key
        for key, action in _flags(function.command).items()
        if open_ended or action.dest in parameters or (action.dest == "quiet" and "progress" in parameters)
    }
    return named | (takes - set(function.cli_only))


def _as_parameter(action: argparse.Action, value, parameters, name: str, key: str) -> dict[str, Any]:
    """A flag's keyword as the function's own parameter: no_figures=True -> figures=False, format= -> fmt=."""
    switch = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
    if switch and not isinstance(value, bool):
        raise UserError(f"ft.{name}()'s {key}= is True or False; got {value!r}.")
    if isinstance(action, argparse._StoreFalseAction):
        value = not value
    if action.dest == "quiet" and "progress" in parameters:
        return {"progress": not value}
    if action.dest not in parameters:
        raise UnknownKeyword(f"ft.{name}() has no keyword {key}= (the command line's --{key.replace('_', '-')}).")
    return {action.dest: value}


def _in_keywords(message: str, flags: dict[str, argparse.Action]) -> str:
    """A sentence about flags, about keywords instead: '--epochs must be ...' -> 'epochs= must be ...'."""

    def keyword(match: re.Match) -> str:
        key = match.group(1).replace("-", "_")
        if key not in flags:
            return match.group(0)
        switch = isinstance(flags[key], (argparse._StoreTrueAction, argparse._StoreFalseAction))
        return f"{key}=True" if switch else f"{key}="

    return re.sub(r"(?<![\w-])--([a-z][a-z0-9-]*)", keyword, message)


@keywords("train")
def train(
    data: str | os.PathLike | None = None,
    *,
    quiet: bool = False,
    verbose: bool = False,
    live: bool | None = None,
    resume: str | os.PathLike | None = None,
    **settings: Any,
) -> Path:
    """Train on `data` (default: the bundled sample) with any setting of `foldertune train`; returns the run folder
    (a Path that shows a summary as the value of a notebook cell: `.report()`, `.show(figure)`).

    Settings use the flag names with underscores: model, mode, epochs, batch_size, lr, img_size, val, test,
    manifest, seed, device, precision, patience, name, project, no_pretrained, ... An unknown name is an error
    with a suggestion. `live` redraws the loss and accuracy curves in the notebook cell while training (default:
    in Jupyter, unless `quiet`). `resume=RUN` continues RUN instead (taking only epochs, device and workers).
    """
    from foldertune.config import RunConfig
    from foldertune.data import sample_data_path
    from foldertune.reporting.notebook_views import RunPath
    from foldertune.training.fit import fit

    if resume is not None:
        extra = sorted(set(settings) - {"epochs", "device", "workers"}) + (["data"] if data is not None else [])
        if extra:
            raise UserError(f"{', '.join(extra)} cannot change when resuming (the run keeps its config.json).")
        return _resume(resume, quiet=quiet, verbose=verbose, live=live, **settings)
    if data is None and not settings.get("manifest"):
        data = sample_data_path()
    lr_auto = settings.get("lr") == "auto"  # the range test chooses it
    if lr_auto:
        del settings["lr"]
    cfg = RunConfig.from_flat(data=None if data is None else str(data), **settings)
    prepared = None
    if lr_auto:
        from foldertune.training.prepare import prepare_data
        from foldertune.training.range_test import with_found_lr

        prepared = prepare_data(cfg.data, seed=cfg.train.seed, progress=not quiet)
        cfg = with_found_lr(cfg, data=prepared, quiet=quiet)
    if cfg.train.folds:
        from foldertune.training.cross_validation import cross_validate

        return RunPath(cross_validate(cfg, data=prepared, quiet=quiet))
    return RunPath(fit(cfg, data=prepared, quiet=quiet, verbose=verbose, live=_live(live, quiet)))


@keywords("lr-find")
def lr_find(
    data: str | os.PathLike | None = None,
    *,
    quiet: bool = False,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int = 100,
    out: str | os.PathLike | None = None,
    force: bool = False,
    **settings: Any,
):
    """The learning-rate range test for the run `ft.train(data, **settings)` would start: an `LrFind` with the
    rates, losses, `.suggestion` and `.plot` (the curve; shown as the value of a notebook cell)."""
    from foldertune.cli import LR_FIND_LEAVES_OUT
    from foldertune.config import ALIASES, RunConfig
    from foldertune.data import sample_data_path
    from foldertune.runs.atomic import check_output
    from foldertune.training.range_test import lr_find_and_plot

    for key in settings:
        if ALIASES.get(key, key) in LR_FIND_LEAVES_OUT or key in LR_FIND_LEAVES_OUT:
            raise UnknownKeyword(f"ft.lr_find() has no keyword {key}=: the range test trains for steps= at the rates "
                                 "it sweeps and keeps nothing.")  # fmt: skip
    if data is None and not settings.get("manifest"):
        data = sample_data_path()
    cfg = RunConfig.from_flat(data=None if data is None else str(data), **settings)
    if out is not None:
        check_output(out, "--out", force=force)
    return lr_find_and_plot(cfg, out=out, start_lr=start_lr, end_lr=end_lr, steps=steps, quiet=quiet,
                            log=(lambda *_: None) if quiet else print)  # fmt: skip


def _resume(run, *, epochs=None, device=None, workers=None, quiet=False, verbose=False, live=None) -> Path:
    from foldertune.reporting.notebook_views import RunPath
    from foldertune.runs.folder import RunFolder
    from foldertune.training.fit import resume as resume_run

    if RunFolder(Path(run).expanduser()).folds():
        from foldertune.training.cross_validation import resume_cross_validation

        return RunPath(resume_cross_validation(run, epochs=epochs, device=device, workers=workers, quiet=quiet))
    return RunPath(resume_run(run, epochs=epochs, device=device, workers=workers, quiet=quiet, verbose=verbose,
                              live=_live(live, quiet)))  # fmt: skip


@keywords("train", cli_only={"resume": "pass the run as ft.resume's first argument."})
def resume(
    run: str | os.PathLike,
    *,
    epochs: int | None = None,
    device: str | None = None,
    workers: int | None = None,
    quiet: bool = False,
    verbose: bool = False,
    live: bool | None = None,
) -> Path:
    """Continue an interrupted run from its last.pt (optionally to a larger number of epochs)."""
    return _resume(run, epochs=epochs, device=device, workers=workers, quiet=quiet, verbose=verbose, live=live)


def _live(live: bool | None, quiet: bool) -> bool:
    from foldertune.notebook import in_jupyter

    return (in_jupyter() and not quiet) if live is None else live


@named_keywords
def load(path: str | os.PathLike, *, device: str = "auto"):
    """A `Classifier` from a run folder (its best.pt) or a checkpoint file (in a notebook: what it is, its classes, what
    it was trained on)."""
    from foldertune.inference.classifier import Classifier

    return Classifier.from_path(_a_path(path, "ft.load", "a run folder or a checkpoint file"), device=device)


def _a_path(value, function: str, what: str):
    """`value` when it is a path (str or os.PathLike); else a UserError that names `function` and what it takes."""
    if isinstance(value, (str, os.PathLike)):
        return value
    raise UserError(f"{function} takes {what}, as a str or a pathlib.Path; got {type(value).__name__}.")


@keywords("evaluate")
def evaluate(
    source: str | os.PathLike,
    data: str | os.PathLike | None = None,
    *,
    split: str = "val",
    out: str | os.PathLike | None = None,
    force: bool = False,
    figures: bool = True,
    fmt: str = "png",
    device: str = "auto",
    tta: bool = False,
    progress: bool = True,
    log=print,
) -> Path:
    """Evaluate a run's best.pt (or a checkpoint) on a split or another folder, and draw its figures (unless
    `no_figures=True`); returns the evaluation folder (a Path that shows the numbers and figures in a notebook).
    `tta=True` averages each image's probabilities with its mirror image's."""
    from foldertune.analysis.evaluation import evaluate_checkpoint
    from foldertune.reporting.notebook_views import EvalPath
    from foldertune.reporting.plots import plot_evaluation

    _a_path(source, "ft.evaluate", "a run folder or a checkpoint file")
    if data is not None:
        _a_path(data, "ft.evaluate's data", "a folder of class folders or a split manifest")
    out = evaluate_checkpoint(source, data, split=split, out=out, force=force, device=device, figures=figures,
                              tta=tta, progress=progress, log=log)  # fmt: skip
    if figures:
        plot_evaluation(out, fmt=fmt)
    return EvalPath(out)


@keywords("explain")
def explain(
    source: str | os.PathLike,
    paths,
    *,
    out: str | os.PathLike | None = None,
    force: bool = False,
    class_name: str | None = None,
    fmt: str = "png",
    device: str = "auto",
    log=print,
) -> list[Path]:
    """Grad-CAM maps for image files (`out=`, `class_name=`); returns the files written."""
    from foldertune.reporting.explanations import explain_files

    paths = list(paths) if not isinstance(paths, (str, os.PathLike)) else [paths]
    return explain_files(source, paths, out=out, force=force, class_name=class_name, device=device, fmt=fmt, log=log)


@keywords("plot")
def plot(run: str | os.PathLike, *, fmt: str = "png") -> list[Path]:
    """Redraw every figure of a run folder; returns the files written."""
    from foldertune.reporting.plots import plot_run

    return plot_run(run, fmt=fmt)


@keywords("compare")
def compare(runs, *, out: str | os.PathLike | None = None, force: bool = False, fmt: str = "png", log=print) -> Path:
    """Overlay the validation curves of several runs and tabulate their best metrics; returns the output folder."""
    from foldertune.analysis.comparison import compare as compare_runs
    from foldertune.reporting.notebook_views import ComparisonPath
    from foldertune.reporting.plots.curves import plot_compare

    runs = [runs] if isinstance(runs, (str, os.PathLike)) else list(runs)  # one path: a run, not its letters
    out, folders = compare_runs(runs, out=out, force=force, log=log)
    plot_compare(folders, out, fmt=fmt)
    return ComparisonPath(out)


@keywords("report")
def report(run: str | os.PathLike) -> Path:
    """Write (or rewrite) run/report.html; returns its path."""
    from foldertune.reporting.html_report import write_report

    return write_report(run)


CHECK_CLI_ONLY = {
    "out": "ft.check writes no check.csv; its result's .rows() are check.csv's rows.",
    "quarantine": "ft.check moves nothing; run `foldertune check DATA --quarantine DIR`.",
    "restore": "ft.check moves nothing; run `foldertune check --restore DIR`.",
    "html": "ft.check writes no check.html; run `foldertune check DATA --labels` for the page.",
}


@keywords("check", cli_only=CHECK_CLI_ONLY)
def check(
    data: str | os.PathLike,
    *,
    fast: bool = False,
    deep: bool = False,
    min_side: int = 32,
    max_aspect: float = 3.0,
    workers: int | None = None,
    labels: bool = False,
    fix_manifest: str | os.PathLike | None = None,
    relabel: bool = False,
    force: bool = False,
    model: str | None = None,
    img_size: int | None = None,
    folds: int | None = None,
    min_label_score: float | None = None,
    device: str | None = None,
    cache_dir: str | None = None,
    progress: bool = True,
):
    """The dataset doctor on a data folder, a split manifest or a run folder: a DataCheck (`.summary()`, `.rows()`,
    `.findings`, `.scores`, `.near_pairs`, `.duplicate_groups`; a table and the findings in a notebook). Every image
    is decoded as training reads it, unless `fast` (headers only) or `deep` (every pixel at full size).
    `labels=True` adds suspected label errors (with the suggested class and a score), near copies by the backbone's
    features and outliers; label options: model, img_size, folds, min_label_score, device, cache_dir. Nothing is
    written, except `fix_manifest` when given."""
    from foldertune.data.check import check_source, decode_level

    _a_path(data, "ft.check", "a data folder, a split manifest or a run folder")
    decode = decode_level(fast=fast, deep=deep)
    given = {"model": model, "img_size": img_size, "folds": folds, "min_label_score": min_label_score,
             "device": device, "cache_dir": cache_dir}  # fmt: skip
    label_options = {key: value for key, value in given.items() if value is not None}
    options = None
    if labels or fix_manifest is not None or relabel or label_options:
        from foldertune.training.label_check import check_fix_options, check_output_path, label_check_options

        check_fix_options(labels=labels, fix_manifest=fix_manifest, relabel=relabel, label_options=label_options)
        options = label_check_options(**label_options)
        if fix_manifest is not None:
            fix_manifest = check_output_path(fix_manifest, data, flag="--fix-manifest", force=force)
    report = check_source(data, decode=decode, tiny_side=min_side, max_aspect=max_aspect, workers=workers,
                          progress=progress)  # fmt: skip
    if options is not None and labels:
        from foldertune.training.label_check import check_labels, write_fix_manifest

        check_labels(report, options, progress=progress, log=lambda *_: None)
        if fix_manifest is not None:
            write_fix_manifest(report, fix_manifest, relabel=relabel)
    return report


@keywords("export")
def export(
    source: str | os.PathLike,
    *,
    fmt: str = "onnx",
    out: str | os.PathLike | None = None,
    force: bool = False,
    opset: int | None = None,
    dynamic_batch: bool = False,
    half: bool = False,
    int8: bool = False,
    images: list[str] | None = None,
    log=print,
):
    """Export a run's best.pt (or a checkpoint) to ONNX or TorchScript, parity-checked; an ExportResult (`.path`,
    `.parity`)."""
    from foldertune.deploy.exporting import export_model

    return export_model(source, fmt=fmt, out=out, force=force, opset=opset, dynamic_batch=dynamic_batch, half=half,
                        int8=int8, images=images, log=log)  # fmt: skip

"""report.html: one self-contained page per run (images embedded, no scripts, no network), readable from disk.

    path = write_report("runs/mobilenet_v2-finetune")   # evaluates and plots first where the run lacks them

Sections: the run at a glance, the data (class counts, files left out), training curves and augmented samples,
then for each evaluated split its metrics with their 95% intervals (and one sentence on what the interval means for
that many images), the calibration, per-class table, most-confused pairs and every figure (confusion matrices,
per-class bars, PR / ROC curves, reliability diagram, prediction and top-loss grids, Grad-CAM maps, feature map), and
finally every setting and library version.
"""

from __future__ import annotations

import base64
import os
from html import escape
from pathlib import Path

from foldertune.errors import UserError
from foldertune.runs.atomic import atomic_open, read_json
from foldertune.runs.folder import EvalFolder, RunFolder
from foldertune.runs.tables import read_table

MAX_SKIPPED_ROWS = 50
EVAL_FIGURES = (
    ("confusion_matrix", "Confusion matrix"),
    ("confusion_matrix_normalized", "Confusion matrix, normalised per true class"),
    ("per_class", "Per-class precision, recall and F1"),
    ("pr_curves", "Precision-recall curves"),
    ("roc_curves", "ROC curves"),
    ("reliability", "Reliability: accuracy against confidence, before and after temperature scaling"),
    ("predictions", "Sample predictions"),
    ("top_losses", "Most confidently wrong: check these for wrong labels"),
    ("cam_gallery", "Grad-CAM: where the network looked"),
    ("feature_map", "Map of the learned features"),
)
OVERALL_NAMES = {
    "images": "images",
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "top3_accuracy": "top-3 accuracy",
    "top5_accuracy": "top-5 accuracy",
    "macro_precision": "precision (macro)",
    "macro_recall": "recall (macro)",
    "macro_f1": "F1 (macro)",
    "weighted_precision": "precision (weighted)",
    "weighted_recall": "recall (weighted)",
    "weighted_f1": "F1 (weighted)",
    "macro_average_precision": "average precision (macro)",
    "macro_roc_auc": "ROC AUC (macro)",
    "loss": "cross-entropy loss",
    "temperature": "temperature (calibration)",
    "ece_before": "expected calibration error, before",
    "ece": "expected calibration error, after",
}
INTERVALS = ("accuracy", "balanced_accuracy", "macro_f1")  # shown with their 95% interval
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK SC", "PingFang SC",
       "Microsoft YaHei", sans-serif; margin: 2rem auto; max-width: 1100px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2rem; margin-top: 2.2rem; }
.cards { display: flex; flex-wrap: wrap; gap: 0.8rem; margin: 1rem 0; }
.card { border: 1px solid #ddd; border-radius: 8px; padding: 0.6rem 1rem; min-width: 9rem; }
.card b { display: block; font-size: 1.6rem; }
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9rem; } .muted { color: #777; }
"""


def write_report(run: str | os.PathLike, *, log=print) -> Path:
    """Write run/report.html (evaluating and plotting first where the run folder lacks it); returns its path."""
    run = RunFolder(run)
    cross_validated = run.cv_file.is_file()
    if not run.has_training_logs() and not cross_validated:
        raise UserError(f"'{run.path}' is not a finished foldertune run folder (config.json or epochs.csv missing).")
    config = run.config()
    if run.has_training_logs():
        _ensure_evaluated(run, log)
        parts = [_overview(run, config), _data(run, config)]
        parts += [_cross_validation(run)] if cross_validated else []
        parts += [_training(run)] + [_evaluation(evaluation) for evaluation in run.evaluations()]
    else:  # cross-validation without --refit: the folds are the run
        parts = [_cv_overview(run, config), _data(run, config), _cross_validation(run)]
    parts.append(_settings(config))
    title = f"foldertune report: {run.name}"
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
        f"<body>{''.join(parts)}</body></html>\n"
    )
    path = run.report_file
    with atomic_open(path) as handle:
        handle.write(page)
    log(f"report: {path}")
    return path


def _ensure_evaluated(run: RunFolder, log) -> None:
    from foldertune.analysis.evaluation import evaluate_checkpoint
    from foldertune.reporting.plots import plot_evaluation, plot_run

    splits = {row["split"] for row in run.split_rows()}
    for split in ("val", "test"):
        if split in splits and not run.evaluation(split).has_figures():  # missing, or numbers only (--no-report)
            plot_evaluation(evaluate_checkpoint(run.path, split=split, progress=False, log=log))
    if not (run.plots_dir / "loss.png").exists():
        plot_run(run.path)


def _overview(run: RunFolder, config: dict) -> str:
    settings, resolved = config["settings"], config["resolved"]
    epochs = run.epochs()
    metrics = run.metrics() if run.metrics_file.exists() else {}
    seconds = sum(float(row["seconds"]) for row in epochs)
    cards = [("epochs trained", str(len(epochs)), ""), ("best epoch", str(metrics.get("best_epoch", "?")), ""),
             ("training time", f"{seconds / 60:.1f} min", "")]  # fmt: skip
    for split in ("val", "test"):
        if split in metrics:
            result = metrics[split]
            cards.append((f"{split} accuracy", f"{result['accuracy']:.3f}", _range(result, "accuracy")))
            cards.append((f"{split} F1 (macro)", f"{result['f1']:.3f}", _range(result, "macro_f1")))
    card_html = "".join(
        f'<div class="card">{escape(name)}<b>{escape(value)}</b>'
        + (f'<span class="muted">95% interval {escape(interval)}</span>' if interval else "")
        + "</div>"
        for name, value, interval in cards
    )
    line = (
        f"{settings['model']['backbone']} · {settings['train']['mode']} · {resolved['device']} · "
        f"{resolved['precision']} · {resolved['preprocessing']['crop_size']} px · weights: {resolved['weights']}"
    )
    return (
        f"<h1>{escape(run.name)}</h1><p class='muted'>{escape(line)}<br>started {escape(config['started'])} · "
        f"<code>{escape(config['command'])}</code></p><div class='cards'>{card_html}</div>"
    )


def _cv_overview(run: RunFolder, config: dict) -> str:
    settings, resolved = config["settings"], config["resolved"]
    line = (
        f"{settings['model']['backbone']} · {settings['train']['mode']} · {resolved['device']} · "
        f"{resolved['precision']} · {resolved['preprocessing']['crop_size']} px · "
        f"{settings['train']['folds']}-fold cross-validation"
    )
    return (
        f"<h1>{escape(run.name)}</h1><p class='muted'>{escape(line)}<br>started {escape(config['started'])} · "
        f"<code>{escape(config['command'])}</code></p>"
    )


def _cross_validation(run: RunFolder) -> str:
    """The folds side by side, each metric's mean +- spread, and the pooled out-of-fold evaluation."""
    cv = read_json(run.cv_file)
    pooled = cv["pooled"]
    names = ("accuracy", "balanced_accuracy", "macro_f1", "loss")
    html = (f"<h2>Cross-validation: {cv['folds']} folds</h2><p>Each fold-k/ is a run trained on the other folds "
            "and validated on its own; every image is validated once, by a model that never saw it (nor its "
            f"copies). Model: {escape(cv['model'])}. <code>foldertune report {escape(str(run.fold(1).path))}</code> "
            "draws a fold's figures.</p>")  # fmt: skip
    for split in ("val", "test"):
        if split not in cv:
            continue
        rows = [{"fold": f"fold-{k + 1}", "images": cv[split]["images"][k],
                 **{name: cv[split][name]["folds"][k] for name in names}} for k in range(cv["folds"])]  # fmt: skip
        for label, key in (("mean", "mean"), ("std", "std"), ("min", "min"), ("max", "max")):
            rows.append({"fold": label, **{name: cv[split][name][key] for name in names}})
        if split == "val":
            rows.append({"fold": "pooled", "images": pooled["overall"]["images"],
                         **{name: pooled["overall"][name] for name in names}})  # fmt: skip
        summary = ", ".join(
            f"{OVERALL_NAMES[name]} {cv[split][name]['mean']:.3f} ± {cv[split][name]['std']:.3f}" for name in names
        )
        html += f"<h3>{escape(split)} split of each fold</h3><p>{escape(summary)}</p>"
        html += _table(rows, ["fold", "images", *names], decimals=tuple(names))
    classes = pooled["classes"]
    matrix = [{"true class": name, **dict(zip(classes, counts, strict=True))}
              for name, counts in zip(classes, pooled["confusion_matrix"], strict=True)]  # fmt: skip
    html += "<h3>Pooled out-of-fold confusion matrix (rows: true class)</h3>"
    html += _table(matrix, ["true class", *classes])
    html += "<h3>Pooled out-of-fold per class</h3>" + _table(
        pooled["per_class"],
        ["class", "precision", "recall", "f1", "support", "average_precision", "roc_auc"],
        decimals=("precision", "recall", "f1", "average_precision", "roc_auc"),
    )
    return html


def _data(run: RunFolder, config: dict) -> str:
    counts = config["data"]["counts"]
    columns = ["class", "train", "val", "test", "total"]
    html = f"<h2>Data</h2><p>{escape(config['data']['source'])}</p>" + _table(counts, columns)
    skipped = read_table(run.data_report_file) if run.data_report_file.exists() else []
    if skipped:
        more = len(skipped) - MAX_SKIPPED_ROWS
        html += f"<h3>Left out ({len(skipped)})</h3>" + _table(
            skipped[:MAX_SKIPPED_ROWS], ["path", "class", "problem", "reason"]
        )
        if more > 0:
            html += f"<p class='muted'>... and {more} more in data_report.csv</p>"
    else:
        html += "<p class='muted'>No file was left out.</p>"
    if run.data_check_file.exists():
        html += _data_check(read_table(run.data_check_file))
    if run.check_page_file.exists():
        html += ("<p>Label check (suspected label errors, near-duplicates, outliers, with thumbnails): "
                 f'<a href="{run.check_page_file.name}">{run.check_page_file.name}</a></p>')  # fmt: skip
    return html


def _data_check(rows: list[dict[str, str]]) -> str:
    """What the data doctor found in the images used: counts per kind, then every warning row (up to a limit)."""
    from foldertune.data.check import KINDS

    used = [row for row in rows if row["status"] not in ("error", "skipped")]
    counts = {kind: sum(kind in row["findings"].split(";") for row in used) for kind in KINDS if kind != "unreadable"}
    found = [{"finding": kind, "severity": KINDS[kind][0], "images": n, "meaning": KINDS[kind][1]}
             for kind, n in counts.items() if n]  # fmt: skip
    html = "<h3>Data check</h3>"
    if not found:
        return html + "<p class='muted'>No duplicates, leaks, tiny, elongated or unusual images.</p>"
    html += _table(found, ["finding", "severity", "images", "meaning"])
    warned = [row for row in used if row["status"] == "warning"]
    if warned:
        html += _table(warned[:MAX_SKIPPED_ROWS], ["path", "class", "split", "findings", "detail"])
        if len(warned) > MAX_SKIPPED_ROWS:
            html += f"<p class='muted'>... and {len(warned) - MAX_SKIPPED_ROWS} more in data_check.csv</p>"
    return html


def _training(run: RunFolder) -> str:
    html = "<h2>Training</h2>"
    for file, caption in (("loss.png", "Loss and learning rate"), ("metrics.png", "Validation metrics per epoch"),
                          ("train_batch.png", "Training images after augmentation")):  # fmt: skip
        html += _figure(run.plots_dir / file, caption)
    return html


def _range(values: dict, key: str) -> str:
    """'0.77-0.98': the 95% interval metrics.json keeps for `key`, or '' for a run written before intervals."""
    low, high = values.get(f"{key}_low"), values.get(f"{key}_high")
    return f"{low:.2f}-{high:.2f}" if low is not None and high is not None else ""


def _evaluation(evaluation: EvalFolder) -> str:
    from foldertune.analysis.intervals import interval_sentence

    metrics = evaluation.metrics()
    overall = metrics["overall"]
    rows = [
        {"metric": OVERALL_NAMES[key], "value": overall[key] if key == "images" else _number(overall[key]),
         "95% interval": _range(overall, key) if key in INTERVALS else ""}
        for key in OVERALL_NAMES
        if overall.get(key) is not None
    ]  # fmt: skip
    html = f"<h2>Evaluation: {escape(evaluation.name)}</h2>"
    html += f"<p class='muted'>best.pt (epoch {metrics['epoch']}) on {escape(metrics['data'])}</p>"
    html += _table(rows, ["metric", "value", "95% interval"])
    if "accuracy_low" in overall:
        split = {"val": "validation", "test": "test"}.get(metrics.get("split"), "evaluated")
        html += (
            "<p>"
            + escape(
                interval_sentence(
                    overall["accuracy"],
                    overall["accuracy_low"],
                    overall["accuracy_high"],
                    overall["images"],
                    split=split,
                )
            )
            + "</p>"
        )
    if "ece" in overall:
        html += f"<p>{calibration_sentence(overall)}</p>"
    per_class = read_table(evaluation.per_class_file)
    html += "<h3>Per class</h3>" + _table(
        per_class,
        ["class", "precision", "recall", "f1", "support", "average_precision", "roc_auc"],
        decimals=("precision", "recall", "f1", "average_precision", "roc_auc"),
    )
    if metrics["confused_pairs"]:
        html += "<h3>Most confused</h3>" + _table(
            metrics["confused_pairs"][:10], ["true", "predicted", "count", "share_of_true"], decimals=("share_of_true",)
        )
    if metrics.get("coverage"):
        html += _coverage(metrics["coverage"])
    if metrics["unreadable"]:
        html += f"<p>{len(metrics['unreadable'])} image(s) could not be read: see predictions.csv.</p>"
    for stem, caption in EVAL_FIGURES:
        html += _figure(evaluation.figure(stem), caption)
    if not evaluation.figure("cam_gallery").exists():
        html += f"<p class='muted'>Grad-CAM maps: {escape(str(metrics.get('cams')))}</p>"
    return html


def calibration_sentence(overall: dict) -> str:
    """What the temperature did to an evaluation's probabilities, in words that fit its figures."""
    temperature, ece, before = overall["temperature"], overall["ece"], overall["ece_before"]
    fitted = ("fitted on the validation images after training (the lowest log loss there, with a prior that keeps "
              "it near 1 when they are few)")  # fmt: skip
    gap = "the expected calibration error (mean gap between confidence and accuracy over 15 bins)"
    if round(temperature, 2) == 1.0:
        return (f"The temperature, {fitted}, is 1.00: the probabilities are the network's own, and {gap} is "
                f"{before:.3f}.")  # fmt: skip
    verdict = ("the probabilities are more honest" if ece < before else
               f"on {overall['images']} images the ECE is a coarse measure, and the log loss decides")  # fmt: skip
    return (
        f"Probabilities are divided by a temperature of {temperature:.2f} before the softmax, {fitted}: {gap} is "
        f"{ece:.3f}, against {before:.3f} without it. Accuracy does not change; {verdict}."
    )


def _coverage(coverage: dict) -> str:
    """Accuracy against coverage: what `--min-confidence P` would leave answered, and how right those answers are."""
    rows = [{"min_confidence": f"{row['min_confidence']:g}", "answered": row["answered"],
             "coverage": row["coverage"], "accuracy": row["accuracy"]} for row in coverage["rows"]]  # fmt: skip
    target, suggested = coverage["target_precision"], coverage["suggested_min_confidence"]
    if suggested is None:
        advice = f"No threshold reaches {target:.0%} accuracy on these images."
    else:
        advice = (f"<code>--min-confidence {suggested:g}</code> reaches {target:.0%} accuracy here, answering "
                  f"{coverage['suggested_coverage']:.0%} of the images (the rest: 'unknown').")  # fmt: skip
    return (
        "<h3>Accuracy against coverage</h3><p>With <code>predict --min-confidence P</code>, images whose top "
        f"probability is below P are answered 'unknown'. {advice}</p>"
        + _table(rows, ["min_confidence", "answered", "coverage", "accuracy"], decimals=("coverage", "accuracy"))
    )


def _settings(config: dict) -> str:
    rows = [{"setting": f"{section}.{key}", "value": value}
            for section, values in config["settings"].items() if isinstance(values, dict)
            for key, value in values.items()]  # fmt: skip
    rows += [
        {"setting": key, "value": value} for key, value in config["settings"].items() if not isinstance(value, dict)
    ]
    versions = [{"library": name, "version": version} for name, version in config["versions"].items()]
    machine = [{"machine": key, "value": value} for key, value in config["machine"].items()]
    return (
        "<h2>Settings</h2>"
        + _table(rows, ["setting", "value"])
        + _table(versions, ["library", "version"])
        + _table(machine, ["machine", "value"])
    )


def _figure(path: Path, caption: str) -> str:
    if not path.exists():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")  # fmt: skip


def _table(rows: list[dict], columns: list[str], *, decimals: tuple[str, ...] = ()) -> str:
    """An HTML table; columns named in `decimals` show four decimals, every other cell exactly as it is."""
    head = "".join(f"<th>{escape(column)}</th>" for column in columns)
    body = ""
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column, "")
            text = _number(value) if column in decimals else "" if value is None else str(value)
            numeric = column in decimals or (isinstance(value, (int, float)) and not isinstance(value, bool))
            css = ' class="n"' if numeric else ""
            cells.append(f"<td{css}>{escape(text)}</td>")
        body += f"<tr>{''.join(cells)}</tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


def _number(value) -> str:
    """A float (also as a string from a CSV file) with four decimals; an empty cell stays empty."""
    if value is None or value == "":
        return ""
    try:
        return f"{float(value):.4f}"
    except (TypeError, ValueError):
        return str(value)

"""What `ft.train`, `ft.evaluate` and `ft.compare` return: the folder's Path, which also shows itself in a notebook.

    run = ft.train(mode="linear", epochs=5)   # a RunPath: a Path everywhere, a summary card as a notebook cell's value
    run.report()                              # report.html inside the notebook
    run.show("top_losses")                    # one figure of the run (plots/ or eval/val/)
    ft.evaluate(run, split="val").show("confusion_matrix")

Each card is drawn from the files in the folder, as every figure is; a path that is not (yet) such a folder shows as
a plain path.
"""

from __future__ import annotations

from pathlib import Path

from foldertune.errors import UserError
from foldertune.notebook import Figure, Html, card, escape, html_table, png_tag
from foldertune.runs.folder import EvalFolder, RunFolder

THUMBNAIL = 380  # pixels: two pictures side by side fit a notebook's width
RUN_FIGURES = ["loss", "metrics", "train_batch"]  # in RUN/plots/
EVAL_FIGURES = ["confusion_matrix", "confusion_matrix_normalized", "per_class", "pr_curves", "roc_curves",
                "reliability", "predictions", "top_losses", "cam_gallery", "feature_map"]  # fmt: skip
METRICS = [("accuracy", "accuracy"), ("macro_precision", "precision"), ("macro_recall", "recall"),
           ("macro_f1", "f1"), ("loss", "loss"), ("images", "images")]  # fmt: skip


def _metric_names() -> list[str]:
    return [METRICS[0][1], "95% interval"] + [name for _, name in METRICS[1:]]


def _metric_values(values: dict, keys: list[str]) -> list:
    """The values of `keys`, with accuracy's 95% interval after it (empty for a folder written before intervals)."""
    low, high = values.get("accuracy_low"), values.get("accuracy_high")
    interval = f"{low:.2f}-{high:.2f}" if low is not None and high is not None else ""
    return [values[keys[0]], interval] + [values[key] for key in keys[1:]]


class _FolderPath(type(Path())):  # the concrete Path class of this system: a subclass of Path itself needs 3.12
    def with_segments(self, *segments) -> Path:
        """Paths derived from this one (`run / "best.pt"`) are plain paths (Python 3.12+)."""
        return Path(*segments)

    def show(self, figure: str) -> Figure:
        """One PNG figure of the folder, displayed inline; the names are those of its .png files."""
        for folder in self._figure_folders():
            if (folder / f"{figure}.png").is_file():
                return Figure(folder / f"{figure}.png")
        known = sorted({p.stem for folder in self._figure_folders() if folder.is_dir() for p in folder.glob("*.png")})
        raise UserError(f"'{self}' has no figure '{figure}'; it has: {', '.join(known) or 'none'}.")

    def _figure_folders(self) -> list[Path]:
        return [Path(self)]


class EvalPath(_FolderPath):
    """An evaluation folder (`RUN/eval/val`, ...), as `ft.evaluate` returns it."""

    def _repr_html_(self) -> str | None:
        folder = EvalFolder(self)
        if not folder.metrics_file.is_file():
            return None
        metrics = folder.metrics()
        overall = metrics["overall"]
        body = html_table(_metric_names(), [_metric_values(overall, [key for key, _ in METRICS])])
        pairs = metrics.get("confused_pairs", [])[:3]
        if pairs:
            body += "<div>most confused: " + "; ".join(
                escape(f"{pair['true']} taken for {pair['predicted']} ({pair['count']}x)") for pair in pairs
            ) + "</div>"  # fmt: skip
        body += _pictures([folder.figure("confusion_matrix"), folder.figure("top_losses")])
        body += _hint("evaluation", EVAL_FIGURES, self._figure_folders())
        title = f"Evaluation on {escape(metrics.get('split', folder.name))}: {escape(self)}"
        return card(title, body)


class RunPath(_FolderPath):
    """A run folder, as `ft.train` and `ft.resume` return it."""

    def _repr_html_(self) -> str | None:
        run = RunFolder(self)
        if not (run.is_run() and run.metrics_file.is_file()):
            return None
        record, metrics = run.config(), run.metrics()
        settings = record["settings"]
        counts = {row["class"]: row for row in record["data"]["counts"]}
        lines = [
            f"{settings['model']['backbone']}, {settings['train']['mode']} mode, best epoch {metrics['best_epoch']} "
            f"of {len(run.epochs())}, {record['resolved']['device']}",
            f"trained on {record['data']['source']}",
            "classes (training images): "
            + ", ".join(f"{name} ({counts[name]['train']})" for name in run.classes() if name in counts),
        ]
        body = "".join(f"<div>{escape(line)}</div>" for line in lines)
        rows = [
            [split, *_metric_values(metrics[split], [name for _, name in METRICS])]
            for split in ("val", "test")
            if split in metrics
        ]
        body += html_table(["best.pt on", *_metric_names()], rows)
        val = run.evaluation("val")
        body += _pictures([run.plots_dir / "loss.png", val.figure("confusion_matrix")])
        body += _hint("run", RUN_FIGURES + EVAL_FIGURES, self._figure_folders(), report=run.report_file.is_file())
        return card(f"Run {escape(run.name)}: {escape(self)}", body)

    def report(self, height: int = 720) -> Html:
        """report.html inside the notebook, in a frame of its own (the report's styles stay in it)."""
        page = RunFolder(self).report_file
        if not page.is_file():
            raise UserError(f"'{self}' has no report.html yet; write it with ft.report(run).")
        content = escape(page.read_text(encoding="utf-8"))  # the attribute holds the whole page, escaped
        return Html(f'<iframe srcdoc="{content}" style="width:100%;height:{height}px;border:1px solid #ccd"></iframe>')

    def _figure_folders(self) -> list[Path]:
        run = RunFolder(self)
        return [run.plots_dir, run.evaluation("val").path, run.evaluation("test").path]


class ComparisonPath(_FolderPath):
    """The folder `ft.compare` writes: compare.csv and compare.png."""

    def _repr_html_(self) -> str | None:
        table, figure = Path(self) / "compare.csv", Path(self) / "compare.png"
        if not table.is_file():
            return None
        import csv

        with open(table, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        return card(f"Comparison: {escape(self)}", html_table(rows[0], rows[1:]) + _pictures([figure], width=760))


def _pictures(paths: list[Path], *, width: int = THUMBNAIL) -> str:
    tags = [png_tag(path, width=width, alt=path.stem) for path in paths if path.is_file()]
    return f'<div style="display:flex;gap:8px;flex-wrap:wrap;margin-top:6px">{"".join(tags)}</div>' if tags else ""


def _hint(kind: str, names: list[str], folders: list[Path], *, report: bool = False) -> str:
    present = [name for name in names if any((folder / f"{name}.png").is_file() for folder in folders)]
    report_hint = "<code>.report()</code> shows report.html here; " if report else ""
    return (
        f'<div style="color:#666;font-size:90%;margin-top:4px">{report_hint}<code>.show(name)</code> shows a figure '
        f"of this {kind}: {escape(', '.join(present))}</div>"
    )

"""What the API's results show as the value of a notebook cell, read from a real run folder; the live curve's
throttle; and the text progress bar of a real Jupyter kernel without ipywidgets."""

import base64
import json
import re
import shutil

import pytest
from conftest import CHINESE_CLASSES

import foldertune as ft
from foldertune.errors import UserError
from foldertune.reporting.live_curve import LiveCurve
from foldertune.reporting.notebook_views import EvalPath, RunPath


def images_in(html: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def test_a_run_shows_its_numbers_classes_and_two_figures(chinese_run):
    run, data = chinese_run
    card = RunPath(run)._repr_html_()
    metrics = ft.load(run).metrics
    assert f"Run {run.name}" in card and "mobilenet_v2, finetune mode" in card and f"trained on {data}" in card
    assert f"{metrics['accuracy']:.4f}" in card  # best.pt's validation accuracy
    for name in CHINESE_CLASSES.values():
        assert name in card
    assert [picture[:4] for picture in images_in(card)] == [b"\x89PNG"] * 2
    assert "report.html" in card and "top_losses" in card
    assert RunPath(run) == run and str(RunPath(run)) == str(run)  # still the Path it was
    assert RunPath(run / "eval")._repr_html_() is None  # not a run: shown as a plain path


def test_an_evaluation_shows_its_metrics_and_a_figure_by_name(chinese_run, tmp_path):
    run = shutil.copytree(chinese_run[0], tmp_path / "run")
    evaluation = ft.evaluate(run, split="val", progress=False, log=lambda *_: None)
    assert isinstance(evaluation, EvalPath)
    card = evaluation._repr_html_()
    overall = json.loads((evaluation / "metrics.json").read_text(encoding="utf-8"))["overall"]
    assert "Evaluation on val" in card and f"{overall['accuracy']:.4f}" in card and len(images_in(card)) == 2
    figure = evaluation.show("per_class")
    assert figure._repr_png_() == (evaluation / "per_class.png").read_bytes()
    with pytest.raises(UserError, match=r"has no figure .nope.; it has: .*confusion_matrix"):
        RunPath(run).show("nope")
    report = RunPath(run).report()._repr_html_()
    assert report.startswith("<iframe srcdoc=") and "&lt;html" in report and "<html" not in report


def test_a_classifier_a_prediction_and_a_data_check_show_themselves(chinese_run):
    run, data = chinese_run
    classifier = ft.load(run)
    card = classifier._repr_html_()
    assert "mobilenet_v2, finetune mode" in card and f"epoch {classifier.epoch}" in card
    assert "3: " + ", ".join(classifier.classes) in card
    photo = sorted((data / "鱼").iterdir())[0]
    prediction = classifier.predict(photo)
    shown = prediction._repr_html_()
    assert f"{photo.name}: {prediction.label} ({100 * prediction.probability:.1f}%)" in shown
    assert shown.count("<tr>") == 3  # one bar per class of the top-k
    verdict = ft.check(data, progress=False)._repr_html_()
    assert "Data check" in verdict and all(name in verdict for name in CHINESE_CLASSES.values())
    assert "fewer than 10 images" in verdict and "no errors or warnings" not in verdict


def test_the_live_curve_redraws_at_most_once_per_interval_and_always_at_the_end(capsys):
    curve = LiveCurve(interval=3600)
    for step in range(10, 1010, 10):
        curve.add_steps([{"step": step, "loss": 1 / step, "accuracy": step / 1000}])
        if step % 100 == 0:
            curve.add_epoch({"val_loss": 0.5, "val_acc": 0.8}, step)
    assert curve.redraws == 1  # the first call draws; the next hour's calls do not
    curve.close()
    assert curve.redraws == 2 and curve.png().startswith(b"\x89PNG")


def test_a_kernel_without_ipywidgets_shows_text_progress_bars(sample_dir, jupyter_kernel):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    cells = [
        "import sys\nsys.modules['ipywidgets'] = None  # as if it were not installed",
        f"import foldertune as ft\nft.check({str(sample_dir)!r}, deep=True)",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    NotebookClient(notebook, timeout=120, kernel_name=jupyter_kernel).execute()
    outputs = notebook.cells[1].outputs
    stderr = "".join(output.get("text", "") for output in outputs if output.get("name") == "stderr")
    assert "checking images:" in stderr and "/138 [" in stderr  # the bar, updated in place with \r
    assert not any("application/vnd.jupyter.widget-view+json" in output.get("data", {}) for output in outputs)
    assert "Data check" in "".join(output.get("data", {}).get("text/html", "") for output in outputs)

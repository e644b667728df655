"""The example notebooks, executed top to bottom on a real Jupyter kernel (nbclient), as a reader runs them; the
executed quick start rendered to HTML by nbconvert and looked at in headless Chromium.

The kernel inherits this session's environment: the private TORCH_HOME with the real mobilenet_v2 weights, the
private cache folder, and PYTHONPATH. Each notebook runs in its own temporary folder, where its runs/ go.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the dev install has nbformat, nbclient and ipykernel")
from nbclient import NotebookClient  # noqa: E402

EXAMPLES = Path(__file__).parent.parent / "examples"
NOTEBOOKS = ["quickstart.ipynb", "transfer_modes.ipynb"]
WIDGET = "application/vnd.jupyter.widget-view+json"


def execute(name: str, folder: Path, kernel: str):
    """The notebook after running every cell in `folder` (a failing cell raises CellExecutionError)."""
    notebook = nbformat.read(EXAMPLES / name, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name=kernel, resources={"metadata": {"path": str(folder)}}).execute()
    return notebook


def outputs_of(notebook, source_start: str) -> list[dict]:
    """The outputs of the code cell whose source starts with `source_start`."""
    cells = [cell for cell in notebook.cells if cell.cell_type == "code" and cell.source.startswith(source_start)]
    assert len(cells) == 1, source_start
    return cells[0].outputs


def html_of(outputs: list[dict]) -> str:
    return "".join(output.get("data", {}).get("text/html", "") for output in outputs)


def pngs_of(outputs: list[dict]) -> list[bytes]:
    return [
        base64.b64decode(output["data"]["image/png"]) for output in outputs if "image/png" in output.get("data", {})
    ]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_stored_without_outputs(name):
    notebook = nbformat.read(EXAMPLES / name, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory, mobilenet_weights, jupyter_kernel):
    folder = tmp_path_factory.mktemp("quickstart")
    return execute("quickstart.ipynb", folder, jupyter_kernel), folder


def test_quickstart_runs_and_shows_each_result_inline(quickstart):
    notebook, folder = quickstart
    run = folder / "runs" / "mobilenet_v2-linear"
    assert (run / "best.pt").is_file() and (run / "export" / "model.onnx").is_file()

    check = html_of(outputs_of(notebook, "ft.check(photos)"))
    assert "Data check" in check and "<td" in check and "fishes" in check

    trained = outputs_of(notebook, "run = ft.train(")
    card = html_of(trained)
    assert "Run mobilenet_v2-linear" in card and "best.pt on" in card and "linear mode" in card
    assert card.count('src="data:image/png;base64,') == 2  # the loss curve and the confusion matrix
    assert any(WIDGET in output.get("data", {}) for output in trained)  # the progress bars are widgets
    curves = pngs_of(trained)  # the live curve's display slot, in its last state
    assert len(curves) == 1 and curves[0].startswith(b"\x89PNG")

    report = html_of(outputs_of(notebook, "run.report()"))
    assert report.startswith("<iframe srcdoc=") and "Evaluation: val" in report
    for figure in ('run.show("confusion_matrix")', 'run.show("top_losses")', "from PIL import Image"):
        assert len(pngs_of(outputs_of(notebook, figure))) == 1, figure
    assert "fishes, monuments, others, renewable, tools" in html_of(outputs_of(notebook, "clf = ft.load(run)"))
    predicted = html_of(outputs_of(notebook, "clf.predict(photo)"))
    exported = html_of(outputs_of(notebook, "from foldertune.deploy.onnx_classifier import OnnxClassifier"))
    assert "fish1.webp: " in predicted
    title = predicted.split("</div>")[0]
    assert title == exported.split("</div>")[0]  # ONNX Runtime: the same top class and probability


def test_transfer_modes_notebook_ends_with_the_comparison(tmp_path, mobilenet_weights, jupyter_kernel):
    notebook = execute("transfer_modes.ipynb", tmp_path, jupyter_kernel)
    for mode in ("linear", "finetune", "scratch"):
        assert f"Run mobilenet_v2-{mode}" in html_of(outputs_of(notebook, f"{mode} = ft.train("))
    comparison = html_of(notebook.cells[-1].outputs)
    assert "Comparison" in comparison and all(f"mobilenet_v2-{m}" in comparison for m in ("linear", "scratch"))
    assert 'src="data:image/png;base64,' in comparison
    assert (tmp_path / "compare" / "compare.csv").is_file()  # beside the runs folder, not inside it


def test_the_executed_quickstart_rendered_by_nbconvert_shows_the_displays_in_chromium(quickstart, browser, artifacts):
    from nbconvert import HTMLExporter

    notebook, _ = quickstart
    page, _ = HTMLExporter().from_notebook_node(notebook)
    assert "Run mobilenet_v2-linear" in page and "Data check" in page and "best.pt on" in page
    rendered = artifacts / "quickstart.html"
    rendered.write_text(page, encoding="utf-8")
    browser.set_window_size(1280, 1000)
    browser.get(rendered.resolve().as_uri())
    cards = browser.execute_script(
        "return Array.from(document.querySelectorAll('.foldertune')).map(c => "
        "[c.getBoundingClientRect().width, c.getBoundingClientRect().height, c.innerText.slice(0, 40)])"
    )
    titles = [text for _, _, text in cards]
    assert any(t.startswith("Data check") for t in titles) and any(t.startswith("Run mobilenet_v2") for t in titles)
    assert all(width > 300 and height > 20 for width, height, _ in cards), cards
    run_card = next(i for i, title in enumerate(titles) if title.startswith("Run"))
    decoded = browser.execute_script(
        "const card = document.querySelectorAll('.foldertune')[arguments[0]]; card.scrollIntoView();"
        "return Array.from(card.querySelectorAll('img')).map(i => i.naturalWidth)",
        run_card,
    )
    assert len(decoded) == 2 and min(decoded) > 100  # the loss curve and the confusion matrix, decoded
    screenshot = artifacts / "quickstart-notebook.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 20_000

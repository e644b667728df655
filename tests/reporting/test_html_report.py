"""report.html in a real browser (Debian's chromium through chromedriver): loads cleanly, every image decodes."""

import re

from conftest import CHINESE_CLASSES


def test_report_is_self_contained(chinese_run):
    html = (chinese_run[0] / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:|//)""", html)  # nothing fetched from a network
    assert "<script" not in html
    assert html.count('src="data:image/png;base64,') >= 10


def test_report_loads_in_chromium_with_every_image_and_class_name(chinese_run, browser, tmp_path):
    run, _ = chinese_run
    browser.get((run / "report.html").resolve().as_uri())
    widths = browser.execute_script("return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
    assert len(widths) >= 10 and all(width > 0 for width in widths), widths
    text = browser.find_element("tag name", "body").text
    for name in CHINESE_CLASSES.values():
        assert name in text
    for heading in ("Data", "Training", "Evaluation: val", "Per class", "Settings"):
        assert heading in text
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    screenshot = tmp_path / "report.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000


def test_report_after_a_numbers_only_run_adds_figures_and_escapes_odd_class_names(tmp_path, mobilenet_weights):
    from helpers import copy_subset

    import foldertune as ft

    odd = {"fishes": "007", "tools": '<b>&"x"', "monuments": "$5_$10"}  # numeric, HTML, TeX-like
    data = copy_subset(tmp_path / "data", 6, odd)
    run = ft.train(data, epochs=1, img_size=64, batch_size=8, workers=0, quiet=True, report=False,
                   project=tmp_path / "runs")  # fmt: skip
    assert not (run / "report.html").exists()
    html = ft.report(run).read_text(encoding="utf-8")
    assert (run / "eval" / "val" / "confusion_matrix.png").exists() and (run / "plots" / "loss.png").exists()
    assert "&lt;b&gt;&amp;&quot;x&quot;" in html and '<b>&"x"' not in html
    assert "<td>007</td>" in html and "$5_$10" in html

"""report.html in a real browser (Debian's chromium through chromedriver): loads cleanly, every image decodes."""

import json
import re

from conftest import CHINESE_CLASSES

from foldertune.reporting.html_report import calibration_sentence


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
    overall = json.loads((run / "eval" / "val" / "metrics.json").read_text(encoding="utf-8"))["overall"]
    assert calibration_sentence(overall) in text
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    screenshot = tmp_path / "report.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000


def test_the_calibration_sentence_fits_the_figures():
    base = {"images": 28}
    same = calibration_sentence({**base, "temperature": 1.001, "ece": 0.2, "ece_before": 0.2})
    assert "is 1.00: the probabilities are the network's own" in same and "is 0.200." in same
    better = calibration_sentence({**base, "temperature": 0.8, "ece": 0.1, "ece_before": 0.2})
    assert "temperature of 0.80" in better and "0.100, against 0.200" in better and "more honest" in better
    worse = calibration_sentence({**base, "temperature": 1.2, "ece": 0.25, "ece_before": 0.2})
    assert "more honest" not in worse and "on 28 images the ECE is a coarse measure" in worse


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

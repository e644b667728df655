"""check.html in a real browser: loads with no console error, every thumbnail decodes, Chinese class names show;
a run checked with --labels links its page from report.html."""

import re
import shutil

import pytest
from conftest import CHINESE_CLASSES
from helpers import SAMPLE, copy_subset, run_cli
from PIL import Image, ImageOps

import foldertune
from foldertune.reporting.check_page import write_check_page


@pytest.fixture(scope="module")
def checked(tmp_path_factory, mobilenet_weights):
    """Photos in Chinese-named class folders with a misfiled fish, a mirrored copy in another class and a black
    frame, label-checked: (report, page)."""
    base = tmp_path_factory.mktemp("check_page")
    data = copy_subset(base / "数据", 8, CHINESE_CLASSES)
    shutil.copy(SAMPLE / "fishes" / "fish20.webp", data / "工具 箱" / "fish20.webp")
    ImageOps.mirror(Image.open(SAMPLE / "tools" / "hammer1.webp").convert("RGB")).save(data / "纪念碑" / "锤子.png")
    Image.new("RGB", (200, 150), (2, 2, 2)).save(data / "鱼" / "black.png")
    report = foldertune.check(data, labels=True, img_size=64, progress=False)
    return report, write_check_page(report, base / "check.html")


def test_the_page_is_self_contained_and_shows_every_section(checked):
    report, page = checked
    html = page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:|//)""", html) and "<script" not in html
    assert "Suspected label errors" in html and "Near-duplicates" in html and "Outliers" in html
    assert report.count("label conflict") == 2  # the mirrored hammer
    assert "fish20.webp" in html.split("Suspected label errors")[1].split("Near-duplicates")[0]


def test_the_page_opens_in_chromium_with_every_thumbnail_and_class_name(checked, browser, tmp_path):
    _, page = checked
    browser.get(page.resolve().as_uri())
    widths = browser.execute_script("return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
    assert len(widths) >= 5 and all(width > 0 for width in widths), widths
    text = browser.find_element("tag name", "body").text
    for name in CHINESE_CLASSES.values():
        assert name in text
    assert "锤子.png" in text
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    screenshot = tmp_path / "check.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000


def test_a_run_checked_with_labels_links_its_page_from_the_report(chinese_run, tmp_path):
    run = shutil.copytree(chinese_run[0], tmp_path / "run")
    done = run_cli("check", str(run), "--labels", "--img-size", "64", "--quiet", cwd=tmp_path)
    assert done.returncode in (0, 1), done.stderr
    assert (run / "check.html").is_file() and (tmp_path / "check.html").is_file()
    assert '<a href="check.html">check.html</a>' in (run / "report.html").read_text(encoding="utf-8")
    assert not (run / "data_check.csv").read_text(encoding="utf-8").count("label-issue")  # the run's record stays

"""`foldertune serve` for real: a uvicorn subprocess, HTTP requests with real photos and hostile files, and headless
Chromium uploading a photo on the page."""

import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from helpers import SAMPLE
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra is part of the dev install")

from foldertune.inference.classifier import Classifier


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post_files(
    url: str, files: list[tuple[str, bytes]], headers: dict | None = None, *, chunked: bool = False
) -> tuple[int, dict]:
    """A multipart POST with one `files` part per (name, bytes), `chunked` without a Content-Length; (status, JSON
    body)."""
    boundary = uuid.uuid4().hex
    body = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
            for name, data in files
        )
        + f"--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        url,
        data=iter([body]) if chunked else body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def start_server(run: Path, *args: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`foldertune serve RUN ARGS...` on a free port, once it answers /health: (process, loopback base URL)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "foldertune", "serve", str(run), "--port", str(port), *args],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})})  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            get(base + "/health")
            break
        except OSError:
            assert process.poll() is None, process.stdout.read().decode()
            time.sleep(0.3)
    return process, base


@pytest.fixture(scope="module")
def server(chinese_run):
    """`foldertune serve RUN` on a free loopback port; yields (base URL, run, data)."""
    run, data = chinese_run
    process, base = start_server(run, "--max-upload-mb", "2")
    yield base, run, data
    process.terminate()
    process.wait(timeout=30)


def test_the_api_predicts_like_the_checkpoint(server):
    base, run, data = server
    health = get(base + "/health")
    assert health["status"] == "ok" and health["kind"] == "checkpoint" and health["gradcam"] is True
    assert get(base + "/classes") == {"classes": ["工具 箱", "纪念碑", "鱼"]}
    photos = sorted(data.rglob("*.webp"))[:3]
    assert len({Image.open(p).size[0] / Image.open(p).size[1] for p in photos}) > 1  # photos of several shapes
    status, body = post_files(base + "/predict?cam=true", [(p.name, p.read_bytes()) for p in photos])
    assert status == 200, body
    expected = Classifier.from_path(run).predict([str(p) for p in photos])
    for answer, prediction, photo in zip(body["predictions"], expected, photos, strict=True):
        assert answer["path"] == photo.name and answer["label"] == prediction.label
        assert answer["probability"] == pytest.approx(prediction.probability, abs=1e-5)
        assert [item["label"] for item in answer["topk"]] == [label for label, _ in prediction.topk]
        overlay = Image.open(io.BytesIO(base64.b64decode(answer["gradcam"].split(",", 1)[1])))
        width, height = Image.open(photo).size
        assert abs(overlay.width / overlay.height - width / height) < 0.02 and max(overlay.size) <= 512
        # outside the centre crop the network saw, the photo dimmed; inside, the heat map's colours
        shown = np.asarray(Image.open(photo).convert("RGB").resize(overlay.size), dtype=float)
        pixels = np.asarray(overlay.convert("RGB"), dtype=float)
        pre = Classifier.from_path(run).preprocessing
        margin = int((max(overlay.size) - min(overlay.size) * pre.crop_size / pre.resize_size) / 2) - 1
        outside = (slice(None), slice(0, margin)) if width > height else (slice(0, margin), slice(None))
        assert np.abs(pixels[outside] - 0.35 * shown[outside]).mean() < 2
        assert np.abs(pixels - 0.35 * shown).mean() > 10
    schema = get(base + "/openapi.json")
    assert {"/predict", "/health", "/classes"} <= set(schema["paths"])


def test_hostile_uploads_get_a_clear_4xx_and_the_server_stays_up(server, tmp_path):
    base, _, _ = server
    Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png")
    photo = (SAMPLE / "fishes" / "fish1.webp").read_bytes()
    cases = {
        "notes.txt": (b"just text\n", 422, "'notes.txt' cannot be used: not an image"),
        "empty.jpg": (b"", 422, "empty file"),
        "cut.webp": (photo[: len(photo) // 3], 422, "'cut.webp' cannot be used"),
        "bomb.png": ((tmp_path / "bomb.png").read_bytes(), 422, "decompression bomb"),
        "huge.jpg": (os.urandom(3 * 2**20), 413, "the limit is 2 MB"),
    }
    for name, (data, status, words) in cases.items():
        code, body = post_files(base + "/predict", [(name, data)])
        assert (code, words in body["detail"]) == (status, True), (name, code, body)
    code, body = post_files(base + "/predict", [("huge.jpg", os.urandom(3 * 2**20))], chunked=True)
    assert (code, body["detail"]) == (413, "the upload is over 2 MB; the limit is 2 MB per request"), body
    code, body = post_files(base + "/predict", [("fish.webp", photo)] * 17)
    assert code == 413 and "limit is 16" in body["detail"]
    assert get(base + "/health")["status"] == "ok"


def test_a_browser_uploads_a_photo_and_sees_the_prediction_and_grad_cam(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, run, data = server
    photo = sorted((data / "鱼").iterdir())[0]
    expected = Classifier.from_path(run).predict(str(photo))
    browser.get(base + "/")
    picker = browser.find_element(By.ID, "file")
    browser.execute_script("arguments[0].hidden = false", picker)  # the page shows a drop zone instead
    picker.send_keys(str(photo))
    WebDriverWait(browser, 60).until(lambda driver: driver.find_element(By.ID, "top1").text)
    assert browser.find_element(By.ID, "top1").text.startswith(expected.label + " (")
    labels = [element.text for element in browser.find_elements(By.CSS_SELECTOR, "#result .label")]
    assert labels == [label for label, _ in expected.topk]
    WebDriverWait(browser, 30).until(
        lambda driver: driver.execute_script(
            "const c = document.getElementById('cam'); return !c.hidden && c.complete && c.naturalWidth > 0"
        )
    )
    assert browser.find_element(By.ID, "error").text == ""
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, severe


LAYOUT = ["header h1", "#drop", "#status", "#answer", "#photo", "#heat", "#model", "footer"]  # the page's parts
BOXES = """return arguments[0].map(s => { const r = document.querySelector(s).getBoundingClientRect();
  return [s, r.left, r.top, r.right, r.bottom]; })"""


def overlaps(boxes: list) -> list[tuple[str, str]]:
    """Pairs of (name, left, top, right, bottom) boxes that share more than a pixel's width of area."""
    pairs = []
    for i, (a, *ra) in enumerate(boxes):
        for b, *rb in boxes[i + 1 :]:
            width = min(ra[2], rb[2]) - max(ra[0], rb[0])
            height = min(ra[3], rb[3]) - max(ra[1], rb[1])
            if width > 0.5 and height > 0.5:
                pairs.append((a, b))
    return pairs


def viewport(browser, width: int, height: int) -> None:
    """The page's viewport in CSS pixels, as a phone (under 500 px wide) or a desktop browser has it."""
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


@pytest.mark.parametrize("width", [390, 820, 1440])
def test_the_page_lays_out_without_overlaps_and_describes_the_model(server, browser, artifacts, width):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, _, data = server
    viewport(browser, width, 900)
    browser.get(base + "/")
    model = browser.find_element(By.ID, "model").text
    assert "trained on" in model and str(data) in model and "mobilenet_v2, finetune mode" in model
    assert "3 classes (training images)" in model
    chips = [item.text for item in browser.find_elements(By.CSS_SELECTOR, "#classes li")]
    assert [chip.rsplit(" ", 1)[0] for chip in chips] == ["工具 箱", "纪念碑", "鱼"]
    assert all(chip.rsplit(" ", 1)[1].isdigit() for chip in chips)

    photo = next(p for p in sorted((data / "纪念碑").iterdir()) if Image.open(p).height > Image.open(p).width)
    picker = browser.find_element(By.ID, "file")
    browser.execute_script("arguments[0].hidden = false", picker)
    picker.send_keys(str(photo))
    browser.execute_script("arguments[0].hidden = true", picker)
    WebDriverWait(browser, 60).until(lambda driver: driver.execute_script(
        "const c = document.getElementById('cam'); return c.complete && c.naturalWidth > 0 "
        "&& !document.getElementById('heat').hidden"))  # fmt: skip
    assert browser.find_element(By.ID, "status").text == photo.name

    boxes = browser.execute_script(BOXES, LAYOUT)
    assert all(right - left > 10 and bottom - top > 10 for _, left, top, right, bottom in boxes), boxes
    assert overlaps(boxes) == [], (width, boxes)
    rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('#result .row')).map(row => "
        "Array.from(row.children).map(c => { const r = c.getBoundingClientRect(); "
        "return [c.className, r.left, r.top, r.right, r.bottom]; }))"
    )
    assert len(rows) == 3 and all(overlaps(row) == [] for row in rows), rows
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width  # no sideways scrolling
    aspects = browser.execute_script(
        "return ['preview', 'cam'].map(id => { const i = document.getElementById(id), r = i.getBoundingClientRect();"
        "return [i.naturalWidth / i.naturalHeight, r.width / r.height, r.top]; })"
    )
    (photo_aspect, photo_shown, photo_top), (cam_aspect, cam_shown, cam_top) = aspects
    assert abs(cam_aspect - photo_aspect) < 0.02 and abs(cam_shown - photo_shown) < 0.02
    assert abs(cam_top - photo_top) < 1  # side by side
    viewport(browser, width, browser.execute_script("return document.documentElement.scrollHeight"))  # all of it
    screenshot = artifacts / f"serve-page-{width}px.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def status_of(url: str, headers: dict | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def token_server(chinese_run):
    """`foldertune serve RUN --host 0.0.0.0` with $FOLDERTUNE_TOKEN set: (base URL, data, its output so far)."""
    run, data = chinese_run
    process, base = start_server(run, "--host", "0.0.0.0", env={"FOLDERTUNE_TOKEN": TOKEN})
    output = []
    yield base, data, output
    process.terminate()
    output.append(process.communicate(timeout=30)[0].decode())


def test_a_token_guards_every_route_but_the_page_and_health(token_server):
    base, data, _ = token_server
    right, wrong = {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": "Bearer guess"}
    assert status_of(base + "/health") == 200 and status_of(base + "/") == 200
    for route in ("/classes", "/openapi.json", "/docs"):
        assert (status_of(base + route), status_of(base + route, wrong)) == (401, 401), route
        assert status_of(base + route, right) == 200, route
    photo = sorted((data / "鱼").iterdir())[0]
    code, body = post_files(base + "/predict", [(photo.name, photo.read_bytes())])
    assert code == 401 and "Authorization: Bearer TOKEN" in body["detail"]
    code, body = post_files(base + "/predict", [(photo.name, photo.read_bytes())], headers=right)
    assert code == 200 and body["predictions"][0]["label"] == "鱼", body


def test_the_page_sends_the_token_from_its_address(token_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, data, _ = token_server
    photo = sorted((data / "鱼").iterdir())[0]
    browser.get(base + f"/#token={TOKEN}")
    picker = browser.find_element(By.ID, "file")
    browser.execute_script("arguments[0].hidden = false", picker)
    picker.send_keys(str(photo))
    WebDriverWait(browser, 60).until(lambda driver: driver.find_element(By.ID, "top1").text)
    assert browser.find_element(By.ID, "top1").text.startswith("鱼 (")
    browser.get(base + "/")  # no token: the server's 401 sentence on the page
    picker = browser.find_element(By.ID, "file")
    browser.execute_script("arguments[0].hidden = false", picker)
    picker.send_keys(str(photo))
    WebDriverWait(browser, 60).until(lambda driver: driver.find_element(By.ID, "error").text)
    assert "Authorization: Bearer TOKEN" in browser.find_element(By.ID, "error").text


def test_serving_beyond_this_machine_without_a_token_says_how_to_add_one(chinese_run):
    process, _ = start_server(chinese_run[0], "--host", "0.0.0.0", env={"FOLDERTUNE_TOKEN": ""})
    process.terminate()
    output = process.communicate(timeout=30)[0].decode()
    assert (
        "foldertune serve: warning: --host 0.0.0.0 makes the app reachable from other machines; it has no "
        "authentication: add --token SECRET" in output
    ), output

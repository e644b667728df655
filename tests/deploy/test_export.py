"""Export to ONNX and TorchScript from a real trained run, the parity check, and prediction without PyTorch."""

import html
import json
import shutil
import subprocess
import sys
import time
import urllib.request

import numpy as np
import onnx
import pytest
import torch
from helpers import SAMPLE, network_logits, read_csv, run_cli, save_with_orientation
from PIL import Image

pytest.importorskip("onnxruntime", reason="the onnx extra is part of the dev install")

from foldertune.analysis.calibration import softmax
from foldertune.data.images import open_image
from foldertune.data.readers import EvalReader
from foldertune.deploy.exporting import ParityError, export_model
from foldertune.deploy.onnx_classifier import OnnxClassifier, eval_pixels
from foldertune.errors import UserError
from foldertune.preprocessing import Preprocessing
from foldertune.runs.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def exported(chinese_run, tmp_path_factory):
    """The Chinese-named run exported once through the CLI, with a dynamic batch: (run, data, model.onnx)."""
    run, data = chinese_run
    out = tmp_path_factory.mktemp("export") / "model.onnx"
    done = run_cli("export", str(run), "--dynamic-batch", "--out", str(out), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "parity check on" in done.stdout and "top-1 agreement 100.0%" in done.stdout
    return run, data, out


def test_the_export_carries_classes_and_preprocessing_and_its_parity(exported):
    run, _, model = exported
    checkpoint = load_checkpoint(run)
    stored = json.loads(OnnxClassifier(model).session.get_modelmeta().custom_metadata_map["foldertune"])
    beside = json.loads(model.with_suffix(".json").read_text(encoding="utf-8"))
    assert stored == beside
    assert stored["classes"] == checkpoint["classes"] == ["工具 箱", "纪念碑", "鱼"]
    assert {k: stored["preprocessing"][k] for k in checkpoint["preprocessing"]} == checkpoint["preprocessing"]
    assert stored["input"]["shape"] == ["batch", 3, 64, 64] and stored["preprocessing"]["max_aspect"] == 8
    val = [row for row in read_csv(run / "split.csv") if row["split"] == "val"]
    assert stored["parity"]["images"] == len(val) and stored["parity"]["top1_agreement"] == 1.0
    assert stored["parity"]["max_probability_difference"] < 1e-4
    data = exported[1]
    assert stored["training"] == {
        "mode": "finetune",
        "data": str(data),
        "val_accuracy": checkpoint["metrics"]["accuracy"],
    }
    with pytest.raises(UserError, match=r"^topk= must be a whole number of at least 1; got 0\.$"):  # as PyTorch says
        OnnxClassifier(model).predict_files([SAMPLE], topk=0)
    with pytest.raises(UserError, match=r"^OnnxClassifier.predict\(\) has no keyword top_k=; did you mean topk=\?$"):
        OnnxClassifier(model).predict(SAMPLE, top_k=1)


def test_the_export_carries_the_temperature_and_the_onnx_predictor_applies_it(exported):
    run, _, model = exported
    checkpoint = load_checkpoint(run)
    classifier = OnnxClassifier(model)
    assert classifier.metadata["temperature"] == checkpoint["temperature"] != 1.0
    paths = [row["path"] for row in read_csv(run / "split.csv") if row["split"] == "val"]
    expected = softmax(network_logits(checkpoint, paths), checkpoint["temperature"])
    classes = checkpoint["classes"]
    for prediction, probabilities in zip(
        classifier.predict_files(paths, topk=3, progress=False), expected, strict=True
    ):
        assert dict(prediction.topk) == pytest.approx(dict(zip(classes, probabilities, strict=True)), abs=1e-4)


def test_the_onnx_predictor_runs_where_torch_cannot_be_imported_and_matches_the_checkpoint(exported, tmp_path):
    run, data, model = exported
    photos = tmp_path / "photos"
    shutil.copytree(data, photos)
    (photos / "broken.jpg").write_bytes(b"not a picture")
    script = "import sys; sys.modules['torch'] = None; from foldertune.cli import main; main()"
    torch_free = subprocess.run(
        [sys.executable, "-c", script, "predict", str(model), str(photos), "--out", str(tmp_path / "onnx.csv")],
        capture_output=True, text=True, encoding="utf-8", timeout=300,
    )  # fmt: skip
    assert torch_free.returncode == 0, torch_free.stderr
    with_torch = run_cli("predict", str(run), str(photos), "--out", str(tmp_path / "torch.csv"))
    assert with_torch.returncode == 0, with_torch.stderr
    onnx_rows, torch_rows = read_csv(tmp_path / "onnx.csv"), read_csv(tmp_path / "torch.csv")
    assert [r["path"] for r in onnx_rows] == [r["path"] for r in torch_rows] and len(onnx_rows) == 25
    for ours, theirs in zip(onnx_rows, torch_rows, strict=True):
        assert ours["label"] == theirs["label"] and ours["error"] == theirs["error"]
        if ours["probability"]:
            assert float(ours["probability"]) == pytest.approx(float(theirs["probability"]), abs=1e-4)
    assert sum(bool(r["error"]) for r in onnx_rows) == 1
    for ours, theirs in zip(onnx_rows, torch_rows, strict=True):  # the export computes the score in its graph, in
        if ours["unknown_score"]:  # float32 (a 2-epoch run on 16 photos: scores in the tens of thousands)
            assert float(ours["unknown_score"]) == pytest.approx(float(theirs["unknown_score"]), rel=1e-5, abs=1e-3)
    assert (
        json.loads(model.with_suffix(".json").read_text(encoding="utf-8"))["unknown_score"]["name"] == "unknown_score"
    )


def test_the_onnx_predictor_answers_unknown_below_min_confidence(exported):
    _, data, model = exported
    classifier = OnnxClassifier(model)
    plain = classifier.predict(data)
    threshold = float(np.median([p.probability for p in plain]))
    cut = classifier.predict(data, min_confidence=threshold)
    assert [p.label == "unknown" for p in cut] == [p.probability < threshold for p in plain]
    assert [(p.top_label, p.probability, p.unknown_score) for p in cut] == [
        (p.label, p.probability, p.unknown_score) for p in plain
    ]
    mirrored = classifier.predict(data, tta=True)
    assert [p.probability for p in mirrored] != [p.probability for p in plain]


def test_the_onnx_predictor_takes_what_the_pytorch_one_takes_and_names_what_it_cannot(exported):
    from PIL import Image

    _, data, model = exported
    classifier = OnnxClassifier(model)
    path = sorted((data / "鱼").iterdir())[0]
    picture = np.asarray(Image.open(path).convert("RGB"))
    by_path = classifier.predict(path)
    mixed = classifier.predict([picture, str(path), Image.open(path)])  # arrays, paths and images in one list
    assert [p.label for p in mixed] == [by_path.label] * 3
    assert mixed[1].probability == by_path.probability
    for wrong, name in ((42, "int"), (None, "NoneType")):
        with pytest.raises(UserError, match=rf"^predict takes a path, a folder, a PIL image, .*; got {name}\.$"):
            classifier.predict(wrong)
    with pytest.raises(UserError, match=r"not the bytes of a file"):
        classifier.predict(path.read_bytes())


@pytest.mark.parametrize("pre", [Preprocessing(), Preprocessing(64, 73, "bicubic"), Preprocessing(96, 110, "nearest")])
def test_the_torch_free_pixels_equal_the_evaluation_transform(pre, tmp_path):
    photo = Image.open(SAMPLE / "monuments" / "monument1.webp").convert("RGB")
    save_with_orientation(photo, tmp_path / "rotated.jpg", 6)
    photo.convert("CMYK").save(tmp_path / "cmyk.jpg")
    photo.resize((900, 40)).save(tmp_path / "strip.png")  # longer than 8:1: cropped first
    photo.resize((50, 31)).save(tmp_path / "small.png")  # upscaled
    photo.resize((2000, 1500)).save(tmp_path / "large.jpg")  # decoded at a reduced scale
    files = [*sorted(SAMPLE.glob("*/*.webp"))[::9], *sorted(tmp_path.iterdir())]
    read = EvalReader(pre)
    for path in files:
        expected = read(str(path)).numpy()
        assert np.array_equal(eval_pixels(open_image(path, min_side=pre.resize_size), pre), expected), path.name


def test_half_precision_and_torchscript_exports_pass_their_checks(exported, tmp_path):
    run, _, _ = exported
    run = shutil.copytree(run, tmp_path / "run")  # the default place: a name of its own, beside export/model.onnx
    half = export_model(run, half=True, log=lambda *_: None)
    assert half.path == run / "export" / "model-fp16.onnx"
    assert half.parity["top1_agreement"] >= 0.99 and half.path.stat().st_size < 0.6 * (run / "best.pt").stat().st_size
    script = export_model(run, fmt="torchscript", out=tmp_path / "model.pt", log=lambda *_: None)
    assert script.parity["top1_agreement"] == 1.0 and script.parity["max_probability_difference"] < 1e-5
    assert json.loads(script.metadata_path.read_text(encoding="utf-8"))["format"] == "torchscript"
    with pytest.warns(FutureWarning):  # TorchScript is in maintenance mode, but loads
        loaded = torch.jit.load(str(script.path))
    assert loaded(torch.zeros(1, 3, 64, 64)).shape == (1, 3)


def test_an_int8_export_is_calibrated_checked_and_predicts_like_any_onnx_export(exported, tmp_path):
    run, data, fp32 = exported
    result = export_model(run, int8=True, out=tmp_path / "int8.onnx", log=lambda *_: None)
    parity = result.parity
    assert parity["top1_agreement"] >= 0.98 and parity["accuracy_drop"] <= 0.01
    assert parity["accuracy_images"] == len([row for row in read_csv(run / "split.csv") if row["split"] == "val"])
    model = OnnxClassifier(result.path)
    assert model.metadata["weights"].startswith("int8")
    ops = {node.op_type for node in onnx.load(str(result.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ: int8 weights and activations
    photos = sorted((data / "鱼").iterdir())[:2]
    assert [p.label for p in model.predict(photos)] == [p.label for p in OnnxClassifier(fp32).predict(photos)]


def test_an_export_that_disagrees_with_pytorch_is_refused_and_leaves_nothing(exported, tmp_path):
    run, data, _ = exported
    checkpoint = load_checkpoint(run)
    head = [key for key in checkpoint["model"] if key.endswith("weight")][-1]
    # class rows that differ by less than half an fp16 step: fp32 ranks the last class first on every image (the
    # features are >= 0), fp16 weights make all classes tie, so the export would pick the first
    base = checkpoint["model"][head][0].abs().half().float()
    steps = 1 + 4e-5 * torch.arange(len(checkpoint["classes"])).unsqueeze(1)
    checkpoint["model"][head] = base * steps
    checkpoint["model"][head.replace("weight", "bias")] = torch.zeros(len(checkpoint["classes"]))
    save_checkpoint(tmp_path / "ties.pt", checkpoint)
    with pytest.raises(ParityError, match="agrees with PyTorch on"):
        export_model(tmp_path / "ties.pt", half=True, out=tmp_path / "out" / "ties.onnx", images=[str(data)],
                     log=lambda *_: None)  # fmt: skip
    assert list((tmp_path / "out").iterdir()) == []


def test_an_onnx_export_is_served_where_torch_cannot_be_imported(exported):
    from test_server import free_port, get, post_files

    _, data, model = exported
    port = free_port()
    script = "import sys; sys.modules['torch'] = None; from foldertune.cli import main; main()"
    server = subprocess.Popen([sys.executable, "-c", script, "serve", str(model), "--port", str(port),
                               "--min-confidence", "0.9999"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                health = get(base + "/health")
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()
                time.sleep(0.2)
        assert health["kind"] == "onnx" and health["gradcam"] is False
        with urllib.request.urlopen(base + "/", timeout=30) as response:
            page = response.read().decode("utf-8")
        assert f"<dt>trained on</dt><dd>{html.escape(str(data))}</dd>" in page and "<li>纪念碑</li>" in page
        photo = sorted((data / "纪念碑").iterdir())[0]
        status, body = post_files(base + "/predict?cam=true", [(photo.name, photo.read_bytes())])
        assert status == 200 and "gradcam" not in body["predictions"][0]
        answer, expected = body["predictions"][0], OnnxClassifier(model).predict(str(photo))
        assert answer["label"] == "unknown" and health["min_confidence"] == 0.9999  # 2 epochs: never that sure
        assert answer["top_label"] == expected.label and answer["unknown_score"] == pytest.approx(
            expected.unknown_score
        )
    finally:
        server.terminate()
        server.wait(timeout=30)

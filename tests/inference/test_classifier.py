import numpy as np
import pytest
from helpers import SAMPLE, network_logits, read_csv, run_cli
from PIL import Image

import foldertune as ft
from foldertune.analysis.calibration import softmax
from foldertune.runs.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def classifier(chinese_run):
    return ft.load(chinese_run[0], device="cpu")


def test_predict_a_path_a_pil_image_a_folder_and_a_list(classifier, chinese_run):
    _, data = chinese_run
    photo = sorted((data / "鱼").glob("*.webp"))[0]
    one = classifier.predict(photo, topk=3)
    assert one.label in classifier.classes and one.path == str(photo) and one.error is None
    assert one.topk[0][0] == one.label and len(one.topk) == 3
    assert sum(p for _, p in one.topk) == pytest.approx(1.0, abs=1e-5)  # three classes: top-3 is everything
    from_pil = classifier.predict(Image.open(photo), topk=3)
    assert from_pil.label == one.label and from_pil.probability == pytest.approx(one.probability, abs=1e-6)
    folder = classifier.predict(data / "鱼")
    assert len(folder) == 8 and all(p.error is None for p in folder)
    mixed = classifier.predict([photo, Image.open(photo).convert("RGBA"), str(photo)])
    assert [p.label for p in mixed] == [one.label] * 3


def test_an_unreadable_file_gives_an_error_entry_not_an_exception(classifier, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff broken")
    results = classifier.predict([tmp_path / "broken.jpg", SAMPLE / "tools" / "tweezer.webp"])
    assert results[0].label is None and results[0].probability is None
    assert results[0].error and results[0].path.endswith("broken.jpg")
    assert results[1].label in classifier.classes


def test_cli_predictions_match_the_python_api(classifier, chinese_run, tmp_path):
    run, data = chinese_run
    out = tmp_path / "preds.csv"
    done = run_cli("predict", str(run), str(data), "--out", str(out), "--topk", "3", "--quiet")
    assert done.returncode == 0, done.stderr
    rows = {row["path"]: row for row in read_csv(out)}
    api = {p.path: p for p in classifier.predict(data)}
    assert rows.keys() == api.keys() and len(rows) == 24
    for path, prediction in api.items():
        assert rows[path]["label"] == prediction.label
        assert float(rows[path]["probability"]) == pytest.approx(prediction.probability, abs=1e-5)
    checkpoint = load_checkpoint(run)  # the probabilities are the network's logits over the stored temperature
    expected = softmax(network_logits(checkpoint, list(rows)), checkpoint["temperature"])
    for row, probabilities in zip(rows.values(), expected, strict=True):
        got = {row[f"top{k}"]: float(row[f"p{k}"]) for k in (1, 2, 3)}
        assert got == pytest.approx(dict(zip(classifier.classes, probabilities, strict=True)), abs=1e-5)


def test_preprocessing_comes_from_the_checkpoint(classifier):
    assert classifier.preprocessing.crop_size == 64  # the run was trained with --img-size 64
    batch = np.stack([np.asarray(classifier.transform(Image.open(SAMPLE / "tools" / "tweezer.webp").convert("RGB")))])
    assert batch.shape == (1, 3, 64, 64)

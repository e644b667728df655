"""The Python API: its functions stay reachable however much of the package has been imported."""

import importlib
import pkgutil
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import in_python_words, run_cli

import foldertune
from foldertune.errors import UserError


def test_api_functions_are_not_shadowed_by_submodules():
    names = ["train", "resume", "load", "evaluate", "explain", "plot", "compare", "report", "check", "export"]
    for module in pkgutil.walk_packages(foldertune.__path__, prefix="foldertune."):
        importlib.import_module(module.name)  # importing a submodule binds its name on the package
    for name in names:
        assert callable(getattr(foldertune, name)) and not isinstance(getattr(foldertune, name), type(foldertune))
        assert name in foldertune.__all__


def test_every_api_function_works_on_a_finished_run(chinese_run, tmp_path):
    import shutil

    run = shutil.copytree(chinese_run[0], tmp_path / "run")
    twin = shutil.copytree(chinese_run[0], tmp_path / "twin")
    (run / "report.html").unlink()
    assert foldertune.report(run) == run / "report.html" and (run / "report.html").stat().st_size > 100_000
    svgs = foldertune.plot(run, fmt="svg")
    assert len(svgs) >= 10 and all(p.suffix == ".svg" for p in svgs)
    photo = sorted((chinese_run[1] / "鱼").glob("*.webp"))[0]
    maps = foldertune.explain(run, photo, out=tmp_path / "cams", log=lambda *_: None)
    assert [p.name for p in maps] == [f"{photo.stem}_cam.png"]
    out = foldertune.compare([run, twin], out=tmp_path / "cmp", log=lambda *_: None)
    assert (out / "compare.csv").read_text(encoding="utf-8").count("\n") == 3
    verdict = foldertune.check(run, progress=False)  # the split it trained on
    assert len(verdict.records) == 24 and not verdict.failed and not verdict.findings
    assert verdict.warnings == [
        "3 classes have fewer than 10 images: '工具 箱' (8), '纪念碑' (8), '鱼' (8); their scores will be noisy"
    ]
    exported = foldertune.export(run, fmt="torchscript", out=tmp_path / "model.pt", log=lambda *_: None)
    assert exported.parity["top1_agreement"] == 1.0 and exported.path.is_file()


def test_the_api_refuses_what_the_cli_refuses_with_the_same_sentence(chinese_run, tmp_path):
    from foldertune.data.scan import scan_folder
    from foldertune.data.split import assign_splits
    from foldertune.deploy.server import create_app, serve

    run, data = chinese_run
    photo = str(sorted((data / "鱼").glob("*.webp"))[0])
    classifier = foldertune.load(run)
    images = scan_folder(data, progress=False).images
    cases = {  # what the CLI is given -> the library call it makes, with the same mistake
        ("export", str(run), "--opset", "3"): lambda: foldertune.export(run, opset=3),
        ("export", str(run), "--format", "torchscript", "--half"): lambda: foldertune.export(
            run, fmt="torchscript", half=True
        ),
        ("predict", str(run), photo, "--topk", "0"): lambda: classifier.predict_files([photo], topk=0),
        ("predict", str(run), photo, "--batch-size", "0"): lambda: classifier.predict(photo, batch_size=0),
        ("predict", str(run), photo, "--min-confidence", "1"): lambda: classifier.predict(photo, min_confidence=1),
        ("check", str(data), "--min-side", "0"): lambda: foldertune.check(data, min_side=0),
        ("check", str(data), "--max-aspect", "0.5"): lambda: foldertune.check(data, max_aspect=0.5),
        ("check", str(data), "--workers", "0"): lambda: foldertune.check(data, workers=0),
        ("serve", str(run), "--port", "70000"): lambda: serve(run, host="127.0.0.1", port=70000, max_upload_mb=10),
        ("serve", str(run), "--max-upload-mb", "0"): lambda: create_app(run, max_upload_mb=0.0),
        ("serve", str(run), "--min-confidence", "-0.1"): lambda: create_app(run, min_confidence=-0.1),
        ("split", str(data), "--seed", "-1"): lambda: assign_splits(images, val_fraction=0.2, test_fraction=0, seed=-1),
    }
    with ThreadPoolExecutor(max_workers=3) as pool:  # each CLI refuses before torch is imported
        done = dict(zip(cases, pool.map(lambda argv: run_cli(*argv, cwd=tmp_path), cases), strict=True))
    for argv, call in cases.items():
        with pytest.raises(UserError) as refused:
            call()
        assert done[argv].returncode == 2, (argv, done[argv].stderr)
        said = done[argv].stderr.removeprefix(f"foldertune {argv[0]}: error: ").removesuffix("\n")
        public = argv[0] not in ("serve", "split")  # ft.* and the Classifier's methods speak of keywords
        assert str(refused.value) == (in_python_words(said, argv[0]) if public else said), argv
    assert not list(tmp_path.iterdir())  # nothing written: no check.csv, no split.csv

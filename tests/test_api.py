"""The Python API: its functions stay reachable however much of the package has been imported."""

import importlib
import pkgutil

import foldertune


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
        "3 class(es) have fewer than 10 images: '工具 箱' (8), '纪念碑' (8), '鱼' (8); their scores will be noisy"
    ]
    exported = foldertune.export(run, fmt="torchscript", out=tmp_path / "model.pt", log=lambda *_: None)
    assert exported.parity["top1_agreement"] == 1.0 and exported.path.is_file()

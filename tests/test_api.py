"""The Python API: its functions stay reachable however much of the package has been imported."""

import importlib
import pkgutil

import foldertune


def test_api_functions_are_not_shadowed_by_submodules():
    names = ["train", "resume", "load", "evaluate", "explain", "plot", "compare", "report"]
    for module in pkgutil.walk_packages(foldertune.__path__, prefix="foldertune."):
        importlib.import_module(module.name)  # importing a submodule binds its name on the package
    for name in names:
        assert callable(getattr(foldertune, name)) and not isinstance(getattr(foldertune, name), type(foldertune))
        assert name in foldertune.__all__

"""The package's layers: every import, at the top of a module or inside a function, points down.

    errors, preprocessing, device, notebook  <  runs  <  data  <  models  <  inference  <  analysis  <  reporting
    <  deploy  <  config  <  training  <  api, cli

A module may import from its own layer and from any layer below it, never from one above.
"""

import ast
from pathlib import Path

import foldertune

PACKAGE = Path(foldertune.__file__).parent
LAYERS = [
    {"errors", "preprocessing", "device", "notebook"},
    {"runs"},
    {"data"},
    {"models"},
    {"inference"},
    {"analysis"},
    {"reporting"},
    {"deploy"},
    {"config"},
    {"training"},
    {"api", "cli", "__main__"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def part_of(module: str) -> str:
    """The top-level part of foldertune a dotted module name belongs to ('' for the package root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports_of(path: Path) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.append(node.module)
        elif isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
    return [module for module in modules if module == "foldertune" or module.startswith("foldertune.")]


def test_every_part_of_the_package_has_a_layer():
    parts = {path.stem if path.is_file() else path.name for path in PACKAGE.iterdir()}
    parts = {part for part in parts if not part.startswith("__") or part == "__main__"} - {"samples"}
    assert parts - {"__main__"} <= set(RANK), f"add {sorted(parts - set(RANK))} to LAYERS"


def test_every_import_points_down():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).with_suffix("")
        own = relative.parts[0] if relative.parts[0] != "__init__" else ""
        if own == "":
            continue  # the package root re-exports the API
        for module in imports_of(path):
            target = part_of(module)
            if target in ("", own):
                continue  # __version__ from the root, or its own sub-package
            if RANK[target] > RANK[own]:
                upward.append(f"{relative} imports {module}")
    assert not upward, "imports that point up:\n" + "\n".join(upward)

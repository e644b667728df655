"""Numbers you can trust on small data: every part of the bench, one after the other.

    python bench/trust.py                               # every part found (bench/trust_*.py), in name order
    python bench/trust.py --parts intervals             # some parts only (bench/trust_intervals.py, ...)
    python bench/trust.py --list                        # the parts found, with their one-line summary
    python bench/trust.py -- --fashion-per-class 50     # arguments after -- go to every part

A part is a module bench/trust_<name>.py with

    def main(argv: list[str]) -> int | None:
        '''One line: what the part measures (shown by --list).'''

Its docstring's first line says what it measures. `main` receives the shared arguments below plus everything after
`--`, parses them with `argparse.ArgumentParser.parse_known_args` (so that options meant for another part are
ignored), prints its figures with the exact commands or settings that produced them, and returns an exit status
(None means 0). A part must not rely on another having run before it. Shared arguments:

    --workdir DIR    an empty scratch folder for the part (removed afterwards unless trust.py gets --keep)
    --quick          smaller budgets: a smoke run of the part, not figures to quote

trust.py exits with the first non-zero status of a part, after running them all. Data that the parts share: the
bundled sample (`foldertune.data.sample_data_path()`) and Fashion-MNIST from Debian's `dataset-fashion-mnist`
(`bench/label_check.py`'s `fashion_folder` writes it as PNG class folders).
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def find_parts() -> dict[str, Path]:
    """name -> file of every bench/trust_<name>.py, in name order."""
    return {path.stem.removeprefix("trust_"): path for path in sorted(BENCH.glob("trust_*.py"))}


def load_part(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCH))  # parts may import their neighbours (label_check.fashion_folder)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "main", None)):
        raise SystemExit(f"{path} has no main(argv) function; see bench/trust.py's docstring for the protocol.")
    return module


def summary(path: Path) -> str:
    """The first line of a part's docstring, read without importing it."""
    import ast

    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return docstring.strip().splitlines()[0] if docstring.strip() else "(no docstring)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own, passed = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", metavar="NAME", help="run only these parts (default: every part)")
    parser.add_argument("--list", action="store_true", help="list the parts and exit")
    parser.add_argument("--quick", action="store_true", help="smaller budgets in every part (a smoke run)")
    parser.add_argument("--keep", action="store_true", help="keep each part's scratch folder")
    args = parser.parse_args(own)
    parts = find_parts()
    if args.list:
        for name, path in parts.items():
            print(f"{name:<14} {summary(path)}")
        return 0
    unknown = sorted(set(args.parts or []) - set(parts))
    if unknown:
        parser.error(f"no part named {', '.join(unknown)}; the parts are {', '.join(parts)}.")
    status = 0
    for name in args.parts or list(parts):
        workdir = Path(tempfile.mkdtemp(prefix=f"foldertune-trust-{name}-"))
        print(f"\n=== {name}: {summary(parts[name])}", flush=True)
        started = time.perf_counter()
        try:
            code = load_part(parts[name]).main(["--workdir", str(workdir), *(["--quick"] if args.quick else []),
                                                *passed])  # fmt: skip
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
        print(f"=== {name}: exit status {code or 0}, {time.perf_counter() - started:.0f} s", flush=True)
        status = status or (code or 0)
    return status


if __name__ == "__main__":
    sys.exit(main())

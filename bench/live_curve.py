"""What the notebook's live training curve costs: the same run with `live=False` and `live=True`, alternated.

    python bench/live_curve.py                    # finetune mobilenet_v2 on the sample, 3 epochs at 128 px, 2 pairs
    python bench/live_curve.py --pairs 3 --epochs 5

Outside Jupyter, IPython's display prints a one-line stand-in for the picture, but the PNG is drawn exactly as in a
notebook, which is the cost that matters. Printed: seconds per run, the redraws of each live run, and the
difference of the medians.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import foldertune as ft
from foldertune.reporting import live_curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--img-size", type=int, default=128)
    args = parser.parse_args()
    drawn = []
    original = live_curve.LiveCurve.close

    def close(curve) -> None:
        original(curve)
        drawn.append(curve.redraws)

    live_curve.LiveCurve.close = close
    seconds = {False: [], True: []}
    with tempfile.TemporaryDirectory() as project:
        for pair in range(args.pairs):
            for live in (False, True) if pair % 2 == 0 else (True, False):
                started = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):
                    ft.train(mode="finetune", epochs=args.epochs, img_size=args.img_size, report=False, quiet=True,
                             live=live, project=project)  # fmt: skip
                seconds[live].append(time.perf_counter() - started)
                print(f"live={live!s:<5} {seconds[live][-1]:6.1f} s" + (f"  {drawn[-1]} redraws" if live else ""))
    off, on = statistics.median(seconds[False]), statistics.median(seconds[True])
    print(f"median: off {off:.1f} s, live {on:.1f} s, difference {on - off:+.1f} s ({100 * (on - off) / off:+.1f}%)")


if __name__ == "__main__":
    main()

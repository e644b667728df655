"""int8 against fp32 ONNX on this CPU: images/s of ONNX Runtime at batch 1 and batch 32.

    python bench/int8_speed.py runs/mobilenet_v2-finetune      # about a minute on a 2-core CPU

The run's best.pt is exported to fp32 ONNX (dynamic batch) and quantized as `export --int8` does
(deploy/quantization.py, calibrated on its training images), without the parity check: this measures speed only
(`foldertune export RUN --int8` decides whether the int8 model is good enough to keep). Each model runs on the
same real validation images, already preprocessed, for a few seconds per batch size after a warm-up. Target: int8
at least 1.5x fp32 at both batch sizes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET = 1.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per model and batch size")
    args = parser.parse_args()

    from foldertune.deploy.exporting import export_model
    from foldertune.deploy.onnx_classifier import OnnxClassifier, normalize
    from foldertune.deploy.quantization import _pixels, calibration_files, quantize_onnx, validation_pairs
    from foldertune.device import cpu_name
    from foldertune.runs.folder import RunFolder

    run = RunFolder(args.run)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="foldertune-int8-") as temporary:
        fp32 = export_model(run.path, dynamic_batch=True, out=Path(temporary) / "fp32.onnx", log=lambda *_: None).path
        int8 = Path(temporary) / "int8.onnx"
        classifier = OnnxClassifier(fp32)
        quantize_onnx(fp32, int8, calibration_files(run), classifier.preprocessing)
        pixels = [_pixels(path, classifier.preprocessing) for path, _ in validation_pairs(run)]
        inputs = normalize(np.stack([p for p in pixels if p is not None]), classifier.preprocessing)
        rates = {}
        for batch in (1, 32):
            data = np.resize(inputs, (batch, *inputs.shape[1:])).astype(np.float32)
            for name, path in (("fp32", fp32), ("int8", int8)):
                rates[name, batch] = images_per_second(OnnxClassifier(path).session, data, args.seconds)
            ratio = rates["int8", batch] / rates["fp32", batch]
            print(f"batch {batch:>2}: fp32 {rates['fp32', batch]:6.1f} images/s, int8 {rates['int8', batch]:6.1f} "
                  f"images/s ({ratio:.2f}x)", flush=True)  # fmt: skip
        met = all(rates["int8", b] >= TARGET * rates["fp32", b] for b in (1, 32))
        print(f"target (int8 >= {TARGET}x fp32 at batch 1 and 32): {'met' if met else 'NOT met'}")


def images_per_second(session, data: np.ndarray, seconds: float) -> float:
    name = session.get_inputs()[0].name
    session.run(None, {name: data})  # warm-up: ONNX Runtime prepares its kernels on the first call
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(None, {name: data})
        done += len(data)
    return done / (time.perf_counter() - started)


if __name__ == "__main__":
    main()

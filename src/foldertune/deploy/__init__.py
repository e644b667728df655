"""Putting a trained model to work: export (ONNX, TorchScript), prediction without PyTorch."""

from foldertune.errors import UserError
from foldertune.runs.folder import RunFolder

HALF_MIN_AGREEMENT = 0.99  # --half: share of the check images whose top-1 class must match PyTorch's fp32 one
INT8_MIN_AGREEMENT = 0.98  # --int8: the same share
INT8_MAX_ACCURACY_DROP = 0.01  # --int8: validation accuracy it may lose against the checkpoint (1 point)
EXPORT_FORMATS = ("onnx", "torchscript")
ONNX_OPSETS = range(7, 31)  # opset numbers --opset takes; anything else is a typo


def check_export_options(*, fmt: str, opset: int | None, half: bool, int8: bool = False) -> None:
    """Refuse export options that cannot work, naming the flag; torch-free, so the CLI calls it before torch loads."""
    if fmt not in EXPORT_FORMATS:
        raise UserError(f"--format must be one of {', '.join(EXPORT_FORMATS)}; got {fmt!r}.")
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int) or opset not in ONNX_OPSETS):
        raise UserError(f"--opset must be an ONNX opset number such as 18; got {opset}.")
    if half and fmt != "onnx":
        raise UserError("--half is for --format onnx (TorchScript keeps the checkpoint's fp32 weights).")
    if int8 and fmt != "onnx":
        raise UserError("--int8 is for --format onnx (ONNX Runtime quantizes it); drop --format torchscript.")
    if int8 and half:
        raise UserError("--int8 and --half are two ways to shrink the model; pass one of them.")


def recommended_min_confidence(run: RunFolder) -> dict | None:
    """The --min-confidence the run's validation evaluation suggests, with the accuracy it reached there and the share
    it answered; None without one. Exports carry it and serve shows it; neither applies it unasked."""
    evaluation = run.evaluation("val")
    if not evaluation.metrics_file.is_file():
        return None
    coverage = evaluation.metrics().get("coverage") or {}
    if coverage.get("suggested_min_confidence") is None:
        return None
    return {"value": coverage["suggested_min_confidence"], "validation_precision": coverage["target_precision"],
            "validation_coverage": coverage["suggested_coverage"]}  # fmt: skip

"""Putting a trained model to work: export (ONNX, TorchScript), prediction without PyTorch."""

HALF_MIN_AGREEMENT = 0.99  # --half: share of the check images whose top-1 class must match PyTorch's fp32 one

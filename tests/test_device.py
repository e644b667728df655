import pytest
import torch

from foldertune.device import choose_device, choose_precision, choose_runtime, cpu_has_native_bf16
from foldertune.errors import UserError

CASCADE_LAKE = "flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni\n"
SAPPHIRE_RAPIDS = "flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
GRAVITON3 = "Features\t: fp asimd sve bf16 i8mm\n"


def test_native_bf16_is_read_from_cpu_flags():
    assert not cpu_has_native_bf16(CASCADE_LAKE)  # avx512 without BF16: emulated and slower, keep fp32
    assert cpu_has_native_bf16(SAPPHIRE_RAPIDS)
    assert cpu_has_native_bf16(GRAVITON3)
    assert not cpu_has_native_bf16("")


def test_auto_precision_on_this_cpu_follows_its_flags():
    expected = "bf16" if cpu_has_native_bf16() else "fp32"
    assert choose_precision("auto", torch.device("cpu")) == expected
    assert choose_precision("fp32", torch.device("cpu")) == "fp32"
    assert choose_precision("bf16", torch.device("cpu")) == "bf16"


def test_impossible_choices_are_user_errors():
    with pytest.raises(UserError, match="--precision fp16 is for GPUs"):
        choose_precision("fp16", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="--device cuda"):
            choose_device("cuda")


def test_runtime_describes_its_choice_and_autocasts():
    runtime = choose_runtime("cpu", "bf16")
    assert "bf16 autocast" in runtime.describe() and "channels_last" in runtime.describe()
    with runtime.autocast():
        assert torch.mm(torch.rand(2, 2), torch.rand(2, 2)).dtype == torch.bfloat16
    assert not runtime.grad_scaler().is_enabled()

"""model.dtype=auto: bf16 only where the hardware computes in it."""

import torch

from system.platform import CPU


def test_auto_dtype_is_float32_on_a_cpu_without_fast_bf16(monkeypatch):
    for fast_bf16, expected in ((False, "float32"), (True, "bfloat16")):
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: fast_bf16)
        assert CPU.model_dtype("auto") == expected
        # as asked
        assert CPU.model_dtype("bfloat16") == "bfloat16" and CPU.model_dtype("float32") == "float32"

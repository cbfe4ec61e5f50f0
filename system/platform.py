"""The one place where CPU and GPU differ. Everything else runs the same code on both.

GPU: CUDA tensors, NCCL for weight sync, vLLM sized by GPU memory fraction, fused AdamW,
     flash-attention over packed micro-batches where installed.
CPU: host tensors, gloo, vLLM's CPU backend sized by a KV-cache budget in GiB, eager mode,
     sdpa once per packed sequence, float32 where the CPU has no fast bf16 (model.dtype=auto).

An actor asks `current_platform()` (the devices its own process sees); the driver, which may run
on a node without a GPU, asks for the cluster's platform (`platform_for(has_gpu)`, fed by
`actors.cluster.cluster_platform`) and passes its decisions (the sync backend) to the actors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Platform:
    device: str  # "cuda" | "cpu"
    dist_backend: str  # "nccl" | "gloo": DeepSpeed's group and the weight-sync group

    @property
    def is_gpu(self) -> bool:
        return self.device == "cuda"

    def adamw_kwargs(self) -> dict:
        """The fused AdamW kernel exists for CUDA tensors only."""
        return {"fused": self.is_gpu}

    def attn_implementation(self, dtype: str, share_prefixes: bool = False) -> str:
        """The trainer's attention over packed micro-batches (system/training/packing.py, which says how
        each of transformers' attentions finds packed sequences): torch's sdpa once per segment where
        prefixes are shared (flash-attention's varlen kernel sees no tree), else flash-attention's varlen
        kernel on a GPU that has it (bf16/fp16 only), else torch's sdpa once per sequence."""
        from transformers.utils import is_flash_attn_2_available

        from system.training.packing import VARLEN_SDPA  # importing it registers it with transformers

        if self.is_gpu and dtype != "float32" and is_flash_attn_2_available() and not share_prefixes:
            return "flash_attention_2"
        return VARLEN_SDPA

    def model_dtype(self, dtype: str) -> str:
        """The dtype the model runs in: `dtype`, or for "auto" bf16 where the hardware computes in it
        (a GPU with bf16, a CPU where oneDNN has a bf16 matmul: AVX-512 or Arm's bf16), else float32.
        On an AVX2-only CPU bf16 is emulated: torch's matmul runs at 1.3 GFLOP/s against 178 in
        float32, vLLM decodes 62 tokens/s against 243 (docs/benchmarks.md, table 9)."""
        if dtype != "auto":
            return dtype
        if self.is_gpu:
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
        if torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return "bfloat16"
        print("model.dtype=auto: float32, this CPU has no fast bf16 matmul (docs/benchmarks.md, table 9)", flush=True)
        return "float32"

    def vllm_env(self, cpu_kv_cache_gib: int, threads: int) -> dict[str, str]:
        """Environment to set before vLLM is imported in an engine process (`threads`: as set_threads)."""
        env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}  # the engine lives in our actor's process
        if not self.is_gpu:
            env["VLLM_CPU_KVCACHE_SPACE"] = str(cpu_kv_cache_gib)
            env["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"  # don't pin cores other actors use
            # Ray sets OMP_NUM_THREADS=1 in an actor with a fractional CPU request and vLLM then keeps
            # torch at that one thread (docs/benchmarks.md, change 1).
            env["OMP_NUM_THREADS"] = str(threads)
        return env

    def vllm_kwargs(self, gpu_memory_utilization: float) -> dict:
        if self.is_gpu:
            return {"gpu_memory_utilization": gpu_memory_utilization}
        # No chunked prefill on CPU: vLLM 0.32's CPU runner crashes rewinding a seeded request's
        # generator when a chunked prefill discards its sample ("CPU Generator does not use offset").
        return {"enforce_eager": True, "enable_chunked_prefill": False}

    @staticmethod
    def num_threads(threads: int, concurrent: int = 1) -> int:
        """`threads`, or when 0 the host's cores split among `concurrent` actors working at once
        (roles take turns, so each gets all cores; engines generate side by side)."""
        return threads or max(1, (os.cpu_count() or 1) // concurrent)

    def set_threads(self, threads: int) -> None:
        """Torch's CPU threads of the calling thread: Ray would leave an actor one per CPU slot it
        asked for. (torch's own function: vLLM's CPU worker replaces `torch.set_num_threads` with a
        no-op once it has started.)"""
        if not self.is_gpu:
            torch._C.set_num_threads(threads)


CPU = Platform("cpu", "gloo")
GPU = Platform("cuda", "nccl")


def platform_for(has_gpu: bool) -> Platform:
    return GPU if has_gpu else CPU


def current_platform() -> Platform:
    """The platform of this process: what its own torch sees."""
    return platform_for(torch.cuda.is_available())

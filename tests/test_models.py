"""The embedded SmolLM2 folder is a real HF model: transformers and vLLM load it and it talks."""

import json
import os

import pytest

from system.models import _build_atomically, resolve_model


def test_embedded_folder_is_bf16_safetensors_with_chat_template(smollm2):
    config = json.load(open(os.path.join(smollm2, "config.json")))
    assert config["num_hidden_layers"] == 30 and config["hidden_size"] == 576
    assert config.get("dtype", config.get("torch_dtype")) == "bfloat16"
    assert "quantization_config" not in config
    assert os.path.exists(os.path.join(smollm2, "model.safetensors"))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                   add_generation_prompt=True)
    assert "<|im_start|>user\nhi<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")


def test_transformers_greedy_chat(smollm2):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2)
    model = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.bfloat16)
    text = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                   tokenize=False, add_generation_prompt=True)
    ids = tok(text, return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=16, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def test_vllm_engine_greedy_chat(ray_cluster, smollm2):
    """The engine actor's vLLM CPU engine on the real model: greedy answer and sane log-probs."""
    from transformers import AutoTokenizer

    from actors.vllm_engine import VLLMEngine
    from system.config.grpo import RolloutConfig
    from system.data.prompts import encode_chat

    tok = AutoTokenizer.from_pretrained(smollm2)
    prompt = encode_chat(tok, [{"role": "user", "content": "What is the capital of France?"}])
    # float32: the 135M model's bf16 greedy reply depends on the CPU's kernels (on an AMX Xeon it starts
    # "L'Étoile, ..."); "auto" is tested in test_platform.py.
    engine = VLLMEngine.options(num_cpus=1).remote(smollm2, RolloutConfig(max_model_len=256), 0, "float32", 2)
    # Ray starts a 1-CPU actor with OMP_NUM_THREADS=1, which vLLM would keep: the engine asked for 2.
    threads = engine.__ray_call__.remote(lambda self: __import__("torch").get_num_threads())
    assert ray_cluster.get(threads) == 2
    [[sample]] = ray_cluster.get(engine.generate.remote([prompt], 1, 0.0, 1.0, 16, [0]))
    assert "Paris" in sample["text"]
    assert len(sample["logprobs"]) == len(sample["response"]) and all(lp <= 0 for lp in sample["logprobs"])
    ray_cluster.kill(engine)


def test_resolve_model_accepts_folders_and_rejects_non_models(tmp_path, tiny_model):
    assert resolve_model(tiny_model) == tiny_model
    with pytest.raises(ValueError, match="no config.json"):
        resolve_model(str(tmp_path))
    assert resolve_model("Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B"  # hub ids pass through


def test_killed_build_leaves_no_folder(tmp_path):
    target = tmp_path / "model"

    def dies(tmp):
        (tmp / "config.json").write_text("{}")
        raise KeyboardInterrupt  # as if killed half-way

    with pytest.raises(KeyboardInterrupt):
        _build_atomically(target, dies)
    assert not target.exists() and list(tmp_path.iterdir()) == [tmp_path / "model.lock"]
    _build_atomically(target, lambda tmp: (tmp / "config.json").write_text("{}"))
    assert (target / "config.json").exists()

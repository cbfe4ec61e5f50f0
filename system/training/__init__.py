"""Everything that updates a model, as plain functions of one data-parallel rank (no Ray):

    samples.py   the typed training sample of a GRPO step, and its cut into mini-batches per rank
    logprobs.py  per-token log-probs (and entropy) under a causal LM, on padded micro-batches
    grpo.py      the GRPO / PPO update
    sft.py       SFT rows (chats with the loss on the assistant's tokens, packing) and their loss
    engines.py   DeepSpeed engines: built, saved as HF folders, checkpointed
"""

"""Everything that updates a model, as plain functions of one data-parallel rank (no Ray):

    samples.py   the typed training sample of a GRPO step, and its cut into mini-batches per rank
    packing.py   micro-batches by token budget, packed end to end in one row (no padding), kept apart
    logprobs.py  per-token log-probs (and entropy) under a causal LM, on packed micro-batches
    grpo.py      the GRPO / PPO update
    sft.py       SFT rows (chats with the loss on the assistant's tokens, packing) and their loss
    engines.py   DeepSpeed engines: built, saved as HF folders, checkpointed
"""

"""Is a fine-tuning stage's effect on greedy accuracy its direction, or only its size? Writes a control
model: the base weights plus the stage's own update (tuned - base) with a random sign on every element,
so each weight moves as far as the stage moved it, in no learnt direction.

    python bench/random_update.py BASE_DIR TUNED_DIR OUT_DIR [--seed 0]
    python launcher/evaluate.py --config configs/grpo_countdown3_cpu.yaml model.path=OUT_DIR

If the control loses as much greedy accuracy as the tuned model, the stage's drop is what any update of
that size does to a sharp greedy path, not what the stage learnt (docs/r1-recipe.md).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def random_sign_update(base: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor],
                       generator: torch.Generator) -> tuple[dict[str, torch.Tensor], float]:
    """base + |tuned - base| * (+-1 at random, per element); and the update's norm (the same for both)."""
    out, sq = {}, 0.0
    for name, b in base.items():
        delta = tuned[name].float() - b.float()
        signs = torch.randint(0, 2, delta.shape, generator=generator).float().mul_(2).sub_(1)
        out[name] = (b.float() + delta.abs() * signs).to(b.dtype)
        sq += float(delta.pow(2).sum())
    return out, sq ** 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base")
    parser.add_argument("tuned")
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    files = sorted(Path(args.base).glob("*.safetensors"))
    if not files:
        raise SystemExit(f"no *.safetensors in {args.base}")
    shutil.copytree(args.tuned, args.out, dirs_exist_ok=True)  # config, tokenizer; the weights are rewritten
    generator = torch.Generator().manual_seed(args.seed)
    for f in files:
        base, tuned = load_file(f), load_file(Path(args.tuned) / f.name)
        if base.keys() != tuned.keys():
            raise SystemExit(f"{f.name}: the two models hold different tensors")
        weights, norm = random_sign_update(base, tuned, generator)
        save_file(weights, Path(args.out) / f.name, metadata={"format": "pt"})
        print(f"{f.name}: {len(weights)} tensors, update norm {norm:.4f}, signs at random (seed {args.seed})")


if __name__ == "__main__":
    main()

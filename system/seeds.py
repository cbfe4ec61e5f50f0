"""Every seed of a run, derived from the run's `seed` and what it is for.

`derive_seed(seed, "step", 3)` is the same in every process and on every resume, and differs
for every purpose and index: purposes never share a seed by arithmetic accident (as `seed + step`
and `seed * k + epoch` can). Engines get consecutive seeds from it (`base + i` per prompt)."""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, purpose: str, index: int = 0) -> int:
    digest = hashlib.blake2b(f"{seed}/{purpose}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % 2**31  # room below 2**63 for the per-prompt offsets

"""Weight-sync protocol between policy rank 0 (sender) and the engine workers (receivers).

Both sides agree on a *plan*: parameters grouped into buckets of one dtype and at most
`bucket_mb` each. For each bucket the sender flattens the tensors into one buffer and
broadcasts it over a dedicated process group (NCCL on GPU, gloo on CPU); receivers split it
back into named views and load them. Few large broadcasts beat hundreds of small ones, and one
bucket travels while the next is flattened (`send`) or the previous one loaded (`receive`). Both
sides keep their bucket buffers from one sync to the next (`BucketBuffers`).
When asked to, both sides checksum every buffer so that the driver can prove the bytes arrived
intact.

The plan is plain lists/dicts/strings so it can cross Ray and vLLM's `collective_rpc` (msgpack).
The actors only call `send` (policy rank 0, actors/policy.py) and `receive` (each engine worker,
actors/vllm_worker.py).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Callable, Iterator, Optional

import torch
from torch.distributed import PrefixStore, TCPStore

# Tensor metadata as it travels: {"name": str, "dtype": "bfloat16", "shape": [..]}
Bucket = list[dict]


def plan_buckets(named_tensors: list[tuple[str, torch.dtype, tuple[int, ...]]], bucket_mb: float) -> list[Bucket]:
    """Consecutive tensors of the same dtype share a bucket until it would exceed `bucket_mb`."""
    limit = bucket_mb * 2**20
    buckets: list[Bucket] = []
    size = 0
    for name, dtype, shape in named_tensors:
        nbytes = torch.Size(shape).numel() * dtype.itemsize
        meta = {"name": name, "dtype": str(dtype).removeprefix("torch."), "shape": list(shape)}
        same_dtype = buckets and buckets[-1][0]["dtype"] == meta["dtype"]
        if same_dtype and size + nbytes <= limit:
            buckets[-1].append(meta)
            size += nbytes
        else:
            buckets.append([meta])
            size = nbytes
    return buckets


def _numel(meta: dict) -> int:
    return torch.Size(meta["shape"]).numel()


def bucket_dtype(bucket: Bucket) -> torch.dtype:
    return getattr(torch, bucket[0]["dtype"])


def bucket_numel(bucket: Bucket) -> int:
    """Elements of the flat buffer, padded to whole 4-byte words so it can be checksummed as int32."""
    numel = sum(_numel(m) for m in bucket)
    per_word = max(1, 4 // bucket_dtype(bucket).itemsize)
    return -(-numel // per_word) * per_word


def bucket_nbytes(bucket: Bucket) -> int:
    return bucket_numel(bucket) * bucket_dtype(bucket).itemsize


class BucketBuffers:
    """Flat bucket buffers kept from one sync to the next: on CPU a fresh 64 MB buffer is fresh
    memory, whose page faults cost ~0.27 s per GB on every sync (docs/benchmarks.md, table 3).
    A buffer is handed out again once no tensor views it any more: the sender's once its broadcast
    is done, the receiver's once the engine has loaded every tensor of it (vLLM's layer-wise reload
    keeps a layer's tensors until the whole layer has arrived, which may be a bucket or more later).
    So a side holds as many as were in use at once: two or three on the sender and receiver here."""

    def __init__(self, nbytes: int, device: str):
        self.nbytes, self.device = nbytes, device
        self.buffers: list[torch.Tensor] = []

    @classmethod
    def for_plan(cls, plan: list[Bucket], device: str, current: Optional["BucketBuffers"]) -> "BucketBuffers":
        """`current` if its buffers hold the plan's largest bucket, else new ones that do."""
        nbytes = max(bucket_nbytes(b) for b in plan)
        return current if current is not None and current.nbytes >= nbytes else cls(nbytes, device)

    def take(self, bucket: Bucket) -> torch.Tensor:
        """A flat buffer for `bucket` that nothing else uses."""
        free = next((b for b in self.buffers if _unused(b)), None)
        if free is None:
            free = torch.empty(self.nbytes, dtype=torch.uint8, device=self.device)
            self.buffers.append(free)
        return free[:bucket_nbytes(bucket)].view(bucket_dtype(bucket))


def _unused(buffer: torch.Tensor) -> bool:
    """No tensor but `buffer` itself holds its memory: the storage's use count is this tensor's
    reference and the handle `untyped_storage()` makes for the question (every view adds one)."""
    return torch._C._storage_Use_Count(buffer.untyped_storage()._cdata) <= 2


def flatten_bucket(bucket: Bucket, tensors: list[torch.Tensor], flat: torch.Tensor) -> torch.Tensor:
    """The bucket's tensors end to end in `flat` (bucket_numel elements), its padding zeroed."""
    offset = 0
    for meta, tensor in zip(bucket, tensors):
        n = _numel(meta)
        flat[offset:offset + n].copy_(tensor.reshape(-1))
        offset += n
    flat[offset:].zero_()
    return flat


def unflatten_bucket(bucket: Bucket, flat: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """Named views into `flat` (no copies)."""
    out, offset = [], 0
    for meta in bucket:
        n = _numel(meta)
        out.append((meta["name"], flat[offset:offset + n].view(meta["shape"])))
        offset += n
    return out


def checksum(flat: torch.Tensor, chunk: int = 1 << 22) -> int:
    """Position-sensitive checksum of the buffer's bytes (Fletcher-like, computed on its device):
    sum of the int32 words and sum of words weighted by their position."""
    words = flat.view(torch.int32)
    s1 = s2 = 0
    for start in range(0, words.numel(), chunk):
        w = words[start:start + chunk].to(torch.int64)
        pos = torch.arange(start, start + w.numel(), device=w.device, dtype=torch.int64) % 65521 + 1
        s1 += int(w.sum())
        s2 += int((w * pos).sum())
    return (s1 % (1 << 61)) * 1_000_003 + s2 % (1 << 61)


def init_sync_group(host: str, port: int, rank: int, world_size: int, backend: str, timeout_s: int = 600):
    """A process group of its own (not torch's default group, which DeepSpeed and vLLM already own),
    rendezvousing through a TCPStore hosted by rank 0, the policy's first rank."""
    timeout = timedelta(seconds=timeout_s)
    store = TCPStore(host, port, world_size, is_master=(rank == 0), timeout=timeout)
    store = PrefixStore("r1ray-weight-sync", store)
    if backend == "gloo":
        from torch.distributed import ProcessGroupGloo

        return ProcessGroupGloo(store, rank, world_size, timeout)
    from torch.distributed import ProcessGroupNCCL

    options = ProcessGroupNCCL.Options()
    options._timeout = timeout
    return ProcessGroupNCCL(store, rank, world_size, options)


def start_broadcast(group, tensor: torch.Tensor):
    """Rank 0's buffer into everyone's `tensor`, in place, complete once the returned work is
    waited on: the next bucket can be flattened (sender) or loaded (receiver) meanwhile."""
    return group.broadcast(tensor, 0)


def send(group, plan: list[Bucket], tensors_of: Callable[[Bucket], AbstractContextManager],
         buffers: BucketBuffers, verify: bool) -> list[int]:
    """The sender's half: every bucket flattened and broadcast, the previous one still on the wire
    meanwhile; returns one checksum per bucket if `verify`.

    `tensors_of(bucket)` is a context holding the bucket's whole tensors (ZeRO-3 gathers them
    there, collectively). Ranks that only take part in those gathers pass `group=None`."""
    sums: list[int] = []
    in_flight = None  # (work, buffer) of the bucket on the wire
    for bucket in plan:
        with tensors_of(bucket) as tensors:
            if group is None:
                continue
            flat = flatten_bucket(bucket, tensors, buffers.take(bucket))
            if verify:
                sums.append(checksum(flat))
            work = start_broadcast(group, flat)
            if in_flight:
                in_flight[0].wait()
            in_flight = (work, flat)
    if in_flight:
        in_flight[0].wait()
    return sums


def receive(group, plan: list[Bucket], buffers: BucketBuffers, verify: bool,
            sums: Optional[list[int]] = None) -> Iterator[tuple[str, torch.Tensor]]:
    """The receiver's half, lazily: (name, tensor) of every parameter, bucket k's once it has
    arrived, while bucket k+1 is already on the wire (two buckets held beyond the model). With
    `verify`, each bucket's checksum is appended to `sums` as it lands."""

    def landed(bucket, flat, work):
        work.wait()
        if verify:
            sums.append(checksum(flat))
        return unflatten_bucket(bucket, flat)

    previous = None
    for bucket in plan:
        flat = buffers.take(bucket)
        work = start_broadcast(group, flat)
        if previous:
            yield from landed(*previous)
        previous = (bucket, flat, work)
    if previous:
        yield from landed(*previous)

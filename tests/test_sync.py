"""Weight-sync protocol: bucket plans, flatten/unflatten, checksums, and both halves (`send`,
`receive`) over a real gloo group between two processes."""

import multiprocessing as mp
from contextlib import contextmanager

import pytest
import torch

from system.sync import (bucket_numel, checksum, flatten_bucket, init_sync_group, plan_buckets, receive, send,
                         unflatten_bucket)


def named(tensors):
    return [(n, t.dtype, tuple(t.shape)) for n, t in tensors]


def test_buckets_respect_size_and_dtype():
    ts = [("a", torch.zeros(256, 1024)), ("b", torch.zeros(256, 1024)), ("c", torch.zeros(10, dtype=torch.bfloat16)),
          ("d", torch.zeros(1024, 1024))]  # a, b: 1 MiB each (fp32); d: 4 MiB, bigger than a bucket
    plan = plan_buckets(named(ts), bucket_mb=2)
    assert [[m["name"] for m in b] for b in plan] == [["a", "b"], ["c"], ["d"]]


def test_flatten_roundtrip_and_padding():
    ts = [("x", torch.randn(3, 5).to(torch.bfloat16)), ("y", torch.randn(7).to(torch.bfloat16))]
    [bucket] = plan_buckets(named(ts), 64)
    assert bucket_numel(bucket) == 22  # 22 bf16 elements padded to whole 4-byte words
    flat = flatten_bucket(bucket, [t for _, t in ts], "cpu")
    for (name, view), (ref_name, ref) in zip(unflatten_bucket(bucket, flat), ts):
        assert name == ref_name and torch.equal(view, ref)


def test_checksum_sees_one_flipped_bit_and_a_swap():
    x = torch.randn(1000).to(torch.bfloat16)
    flipped = x.clone()
    flipped.view(torch.int16)[500] ^= 1
    swapped = x.clone()
    swapped[[3, 4]] = x[[4, 3]]
    assert checksum(x) == checksum(x.clone())
    assert checksum(x) != checksum(flipped)
    assert x[3] == x[4] or checksum(x) != checksum(swapped)


def _receiver(port, plan, verify, queue):
    group = init_sync_group("127.0.0.1", port, 1, 2, "gloo", timeout_s=60)
    sums: list[int] = []
    received = [(name, t.clone()) for name, t in receive(group, plan, "cpu", verify, sums)]
    queue.put((sums, received))


@pytest.mark.parametrize("verify", [True, False])
def test_send_and_receive_a_plan_between_processes(verify):
    """Both halves of the pipeline over a real gloo group: three buckets (so one is always on the
    wire while another is flattened or loaded), every tensor arrives intact and in plan order."""
    from actors.group import free_port

    ts = [("w", torch.randn(64, 32).to(torch.bfloat16)), ("b", torch.randn(31).to(torch.bfloat16)),
          ("v", torch.randn(128, 64).to(torch.bfloat16)), ("f", torch.randn(9))]
    plan = plan_buckets(named(ts), bucket_mb=0.01)  # ~10 KB: w b (31 elements: padded) | v | f (fp32)
    assert len(plan) == 3
    by_name = dict(ts)
    entered = []

    @contextmanager
    def tensors_of(bucket):  # as the policy does around a ZeRO-3 gather
        entered.append([m["name"] for m in bucket])
        yield [by_name[m["name"]] for m in bucket]

    port = free_port()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_receiver, args=(port, plan, verify, queue))
    proc.start()
    group = init_sync_group("127.0.0.1", port, 0, 2, "gloo", timeout_s=60)
    sent_sums = send(group, plan, tensors_of, "cpu", verify)
    received_sums, received = queue.get(timeout=60)
    proc.join(timeout=30)
    assert entered == [[m["name"] for m in b] for b in plan]
    assert [name for name, _ in received] == [name for name, _ in ts]
    assert all(torch.equal(t, by_name[name]) for name, t in received)
    assert received_sums == sent_sums and len(sent_sums) == (3 if verify else 0)
    assert not verify or sent_sums == [checksum(flatten_bucket(b, [by_name[m["name"]] for m in b], "cpu"))
                                       for b in plan]


def test_a_rank_without_the_group_only_enters_the_gathers():
    ts = [("a", torch.zeros(4)), ("b", torch.zeros(4, dtype=torch.bfloat16))]
    plan = plan_buckets(named(ts), 64)
    entered = []

    @contextmanager
    def tensors_of(bucket):
        entered.append(len(bucket))
        yield [t for _, t in ts]

    assert send(None, plan, tensors_of, "cpu", verify=True) == []
    assert entered == [1, 1]

"""Weight-sync protocol: bucket plans, flatten/unflatten, checksums, and both halves (`send`,
`receive`) over a real gloo group between two processes."""

import multiprocessing as mp
from contextlib import contextmanager

import pytest
import torch

from system.weight_sync import (BucketBuffers, bucket_dtype, bucket_numel, checksum, flatten_bucket,
                                init_sync_group, plan_buckets, receive, send, unflatten_bucket)


def named(tensors):
    return [(n, t.dtype, tuple(t.shape)) for n, t in tensors]


def test_buckets_respect_size_and_dtype():
    ts = [("a", torch.zeros(256, 1024)), ("b", torch.zeros(256, 1024)),
          ("c", torch.zeros(10, dtype=torch.bfloat16)),
          ("d", torch.zeros(1024, 1024))]  # a, b: 1 MiB each (fp32); d: 4 MiB, bigger than a bucket
    plan = plan_buckets(named(ts), bucket_mb=2)
    assert [[m["name"] for m in b] for b in plan] == [["a", "b"], ["c"], ["d"]]


def test_flatten_roundtrip_and_padding():
    ts = [("x", torch.randn(3, 5).to(torch.bfloat16)), ("y", torch.randn(6).to(torch.bfloat16))]
    [bucket] = plan_buckets(named(ts), 64)
    assert bucket_numel(bucket) == 22  # 21 bf16 elements padded to whole 4-byte words
    flat = BucketBuffers.for_plan([bucket], "cpu", None).take(bucket)
    flat.view(torch.uint8).fill_(255)  # what a reused buffer may hold
    flatten_bucket(bucket, [t for _, t in ts], flat)
    for (name, view), (ref_name, ref) in zip(unflatten_bucket(bucket, flat), ts):
        assert name == ref_name and torch.equal(view, ref)
    assert flat[21] == 0  # the padding


def test_buffers_are_reused_once_nothing_views_them():
    ts = [("a", torch.zeros(1000)), ("b", torch.zeros(500)), ("c", torch.zeros(3000))]
    plan = plan_buckets(named(ts), bucket_mb=0.005)  # a | b | c
    buffers = BucketBuffers.for_plan(plan, "cpu", None)
    assert buffers.nbytes == 12_000  # the largest bucket, c
    held = unflatten_bucket(plan[0], buffers.take(plan[0]))  # the engine still holds a's tensor
    second = buffers.take(plan[1])
    assert second.data_ptr() != held[0][1].data_ptr()
    del second, held
    assert [buffers.take(b).data_ptr() for b in plan] == [buffers.buffers[0].data_ptr()] * 3
    assert len(buffers.buffers) == 2
    assert BucketBuffers.for_plan(plan[:1], "cpu", buffers) is buffers
    # a bucket of 16 KB
    assert BucketBuffers.for_plan(plan_buckets(named(ts), 1), "cpu", buffers) is not buffers


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
    """Two syncs into the same buffers: the first keeps every tensor to the end (as a layer-wise
    reload keeps a layer's until all of it has arrived), the second copies each at once."""
    group = init_sync_group("127.0.0.1", port, 1, 2, "gloo", timeout_s=60)
    buffers = BucketBuffers.for_plan(plan, "cpu", None)
    for hold in (True, False):
        sums: list[int] = []
        weights = receive(group, plan, buffers, verify, sums)
        received = [(name, t.clone()) for name, t in (list(weights) if hold else weights)]
        queue.put((sums, received, len(buffers.buffers)))


@pytest.mark.parametrize("verify", [True, False])
def test_send_and_receive_a_plan_between_processes(verify):
    """Both halves of the pipeline over a real gloo group, twice, each side in buffers kept from the
    first sync to the second: five buckets (so one is always on the wire while another is flattened
    or loaded), every tensor arrives intact and in plan order."""
    from actors.group import free_port

    ts = [("w", torch.randn(64, 32).to(torch.bfloat16)), ("b", torch.randn(31).to(torch.bfloat16)),
          ("v", torch.randn(128, 64).to(torch.bfloat16)), ("f", torch.randn(9)),
          ("x", torch.randn(64, 32).to(torch.bfloat16)), ("y", torch.randn(64, 32).to(torch.bfloat16))]
    plan = plan_buckets(named(ts), bucket_mb=0.005)  # ~5 KB: w b (31 elements: padded) | v | f (fp32) | x | y
    assert len(plan) == 5
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
    buffers = BucketBuffers.for_plan(plan, "cpu", None)
    kept = []  # buffers of (sender, receiver) after each sync
    for sync in range(2):
        for _, t in ts:
            t.add_(1)  # an update between syncs
        sent_sums = send(group, plan, tensors_of, buffers, verify)
        received_sums, received, receiver_buffers = queue.get(timeout=60)
        assert [name for name, _ in received] == [name for name, _ in ts]
        assert all(torch.equal(t, by_name[name]) for name, t in received)
        assert received_sums == sent_sums and len(sent_sums) == (5 if verify else 0)
        if verify:
            flat = [flatten_bucket(b, [by_name[m["name"]] for m in b],
                                   torch.empty(bucket_numel(b), dtype=bucket_dtype(b))) for b in plan]
            assert sent_sums == [checksum(f) for f in flat]
        kept.append((len(buffers.buffers), receiver_buffers))
    proc.join(timeout=30)
    # The sender reuses within a sync and across: 2 in use at once (3 when gloo's worker thread lets go
    # of a sent buffer after its wait returned); the receiver, holding every tensor to the end of the
    # first sync, needs all 5, and none new in the second.
    assert all(sender <= 3 for sender, _ in kept) and [receiver for _, receiver in kept] == [5, 5]
    assert entered == [[m["name"] for m in b] for b in plan] * 2


def test_a_rank_without_the_group_only_enters_the_gathers():
    ts = [("a", torch.zeros(4)), ("b", torch.zeros(4, dtype=torch.bfloat16))]
    plan = plan_buckets(named(ts), 64)
    entered = []

    @contextmanager
    def tensors_of(bucket):
        entered.append(len(bucket))
        yield [t for _, t in ts]

    assert send(None, plan, tensors_of, BucketBuffers.for_plan(plan, "cpu", None), verify=True) == []
    assert entered == [1, 1]

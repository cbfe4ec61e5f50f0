"""Weight-sync protocol: bucket plans, flatten/unflatten, checksums, and a real gloo broadcast."""

import multiprocessing as mp

import torch

from system.sync import (broadcast, bucket_numel, checksum, empty_bucket, flatten_bucket, init_sync_group,
                         plan_buckets, unflatten_bucket)


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


def _receiver(port, bucket, queue):
    group = init_sync_group("127.0.0.1", port, 1, 2, "gloo", timeout_s=60)
    flat = empty_bucket(bucket, "cpu")
    broadcast(group, flat)
    queue.put((checksum(flat), [t.clone() for _, t in unflatten_bucket(bucket, flat)]))


def test_gloo_broadcast_between_processes():
    from actors.group import free_port

    ts = [("w", torch.randn(64, 32).to(torch.bfloat16)), ("b", torch.randn(32).to(torch.bfloat16))]
    [bucket] = plan_buckets(named(ts), 64)
    port = free_port()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_receiver, args=(port, bucket, queue))
    proc.start()
    group = init_sync_group("127.0.0.1", port, 0, 2, "gloo", timeout_s=60)
    flat = flatten_bucket(bucket, [t for _, t in ts], "cpu")
    broadcast(group, flat)
    received_sum, received = queue.get(timeout=60)
    proc.join(timeout=30)
    assert received_sum == checksum(flat)
    assert all(torch.equal(a, b) for a, b in zip(received, [t for _, t in ts]))

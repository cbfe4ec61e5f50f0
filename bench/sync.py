"""Table 3: our bucketed weight sync against its floor and against per-tensor broadcast.

    flock /tmp/r1ray-heavy.lock .venv/bin/python bench/sync.py [--repeats 6] [--buckets 1 16 64 256]

The real stack (actors/cluster.py: a vLLM engine actor, a DeepSpeed policy actor, their gloo sync
group) with SmolLM2-135M. Ours = `actors.weights.send()` as the training loop calls it, timed at the driver,
for each bucket size (0 MB = one bucket per tensor: per-tensor broadcast), and at the default size
with the checksums of a verified sync (`sync.verify_every`). Floor = one broadcast of
all the bytes as one flat, pre-allocated buffer over the same group + one `reload_weights` of the
same tensors already in the engine's memory, each timed inside the receiving actor. Sizes are
interleaved within every repeat; the first repeat is warm-up.
"""

from __future__ import annotations

import argparse
import time

import ray
import torch
from common import BENCH_CONFIG, fmt, save, spread, warn_if_busy

from system.config.grpo import load_config
from system.models import resolve_model
from system.weight_sync import checksum, flatten_bucket, start_broadcast

# --- functions run inside the actors (ray's __ray_call__, vLLM's collective_rpc) ---

def replan(policy, bucket_mb: float) -> list:
    policy.cfg.sync.bucket_mb = bucket_mb
    return policy.weight_buckets()


def send_flat(policy, numel: int) -> float:
    flat = torch.zeros(numel, dtype=torch.bfloat16)
    start = time.perf_counter()
    start_broadcast(policy.sync_group, flat).wait()
    return time.perf_counter() - start


def receive_flat(engine, numel: int) -> float:
    def in_worker(worker, numel: int) -> float:
        flat = torch.zeros(numel, dtype=torch.bfloat16)  # allocated and touched before the clock starts
        start = time.perf_counter()
        start_broadcast(worker._weight_sync_group, flat).wait()
        return time.perf_counter() - start

    return engine.llm.collective_rpc(in_worker, args=(numel,))[0]


def reload_in_memory(engine, buckets: list) -> float:
    def in_worker(worker, buckets: list) -> float:
        tensors = [(m["name"], torch.randn(m["shape"]).to(torch.bfloat16) * 0.02) for b in buckets for m in b]
        start = time.perf_counter()
        worker.reload_weights(weights_iterator=iter(tensors), is_checkpoint_format=True)
        return time.perf_counter() - start

    return engine.llm.collective_rpc(in_worker, args=(buckets,))[0]


def time_checksums(flats: list[torch.Tensor]) -> dict:
    start = time.perf_counter()
    for flat in flats:
        checksum(flat)
    return {"checksum_s": time.perf_counter() - start, "torch_threads": torch.get_num_threads()}


def sender_parts(policy) -> dict:
    """What our sender does besides broadcasting: flatten each bucket into the buffers it keeps, checksum it."""
    by_name = dict(policy.sync_params)
    flatten_s = checksum_s = 0.0
    for b in policy.buckets:
        start = time.perf_counter()
        flat = flatten_bucket(b, [by_name[m["name"]].data for m in b], policy.sync_buffers.take(b))
        flatten_s += time.perf_counter() - start
        checksum_s += time_checksums([flat])["checksum_s"]
    return {"flatten_s": flatten_s, "checksum_s": checksum_s, "torch_threads": torch.get_num_threads()}


def receiver_parts(engine, numel: int) -> dict:
    """The receiver's checksums, inside the engine worker (with the engine's torch threads)."""
    def in_worker(worker, numel: int) -> dict:
        return time_checksums([torch.randn(numel).to(torch.bfloat16)])

    return engine.llm.collective_rpc(in_worker, args=(numel,))[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--buckets", type=float, nargs="+", default=[0, 1, 16, 64, 256])
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from actors.cluster import build_actors, start_ray
    from actors.placement import Placement

    warn_if_busy()
    cfg = load_config(BENCH_CONFIG, ["algorithm.kl_coef=0"])
    model_path = resolve_model(cfg.model.path)
    start_ray("", Placement.logical_cpus(cfg.roles(), cfg.placement))
    actors = build_actors(cfg, model_path, AutoTokenizer.from_pretrained(model_path))
    policy, engine = actors.policy.actors[0], actors.engines.engines[0]
    plans = {mb: ray.get(policy.__ray_call__.remote(replan, mb)) for mb in {*args.buckets, cfg.sync.bucket_mb}}
    num_bytes = sum(torch.Size(m["shape"]).numel() * 2 for bucket in actors.weights.buckets for m in bucket)  # bf16
    numel = num_bytes // 2
    ours, verified = {mb: [] for mb in args.buckets}, []
    floor_broadcast, floor_reload, parts, receiver = [], [], [], []
    for repeat in range(args.repeats):
        for mb in args.buckets:
            ray.get(policy.__ray_call__.remote(replan, mb))
            actors.weights.buckets = plans[mb]
            start = time.perf_counter()
            actors.weights.send(0)
            ours[mb].append(time.perf_counter() - start)
        ray.get(policy.__ray_call__.remote(replan, cfg.sync.bucket_mb))
        actors.weights.buckets = plans[cfg.sync.bucket_mb]
        start = time.perf_counter()
        actors.weights.send(0, verify=True)
        verified.append(time.perf_counter() - start)
        _, received = ray.get([policy.__ray_call__.remote(send_flat, numel),
                               engine.__ray_call__.remote(receive_flat, numel)])
        floor_broadcast.append(received)
        floor_reload.append(ray.get(engine.__ray_call__.remote(reload_in_memory, plans[args.buckets[0]])))
        parts.append(ray.get(policy.__ray_call__.remote(sender_parts)))
        receiver.append(ray.get(engine.__ray_call__.remote(receiver_parts, numel)))
        print(f"repeat {repeat}: " + ", ".join(f"{mb:g} MB {ours[mb][-1]:.2f} s" for mb in args.buckets)
              + f"; floor {floor_broadcast[-1]:.2f} + {floor_reload[-1]:.2f} s", flush=True)
    warn_if_busy()
    actors.shutdown()

    broadcast_s, reload_s = spread(floor_broadcast[1:]), spread(floor_reload[1:])
    floor = broadcast_s["median"] + reload_s["median"]
    result = {
        "bytes": num_bytes, "tensors": sum(len(b) for b in plans[args.buckets[0]]),
        "repeats": args.repeats,
        "ours_s": {f"{mb:g}": spread(ours[mb][1:]) for mb in args.buckets},
        "ours_verified_s": spread(verified[1:]), "verified_bucket_mb": cfg.sync.bucket_mb,
        "buckets": {f"{mb:g}": len(plans[mb]) for mb in args.buckets},
        "floor_broadcast_s": broadcast_s, "floor_reload_s": reload_s, "floor_s": floor,
        "sender_flatten_s": spread([p["flatten_s"] for p in parts[1:]]),
        "sender_checksum_s": spread([p["checksum_s"] for p in parts[1:]]),
        "receiver_checksum_s": spread([p["checksum_s"] for p in receiver[1:]]),
        "torch_threads": {"sender": parts[-1]["torch_threads"], "receiver": receiver[-1]["torch_threads"]},
        "raw": {"ours": ours, "verified": verified, "floor_broadcast": floor_broadcast,
                "floor_reload": floor_reload, "parts": parts, "receiver": receiver},
    }
    save("sync", result)
    gb = result["bytes"] / 1e9
    print(f"\n{result['tensors']} tensors, {gb * 1000:.0f} MB; floor = broadcast {fmt(broadcast_s, 2)} s "
          f"+ reload {fmt(reload_s, 2)} s = {floor:.2f} s")
    print("\n| bucket MB | buckets | sync s | GB/s | x floor |\n|---:|---:|---:|---:|---:|")
    for mb in args.buckets:
        s = result["ours_s"][f"{mb:g}"]
        label = "per tensor" if mb == 0 else f"{mb:g}"
        print(f"| {label} | {result['buckets'][f'{mb:g}']} | {fmt(s, 2)} | {gb / s['median']:.2f} "
              f"| {s['median'] / floor:.2f} |")
    s = result["ours_verified_s"]
    buckets = result['buckets'][f'{cfg.sync.bucket_mb:g}']
    print(f"| {cfg.sync.bucket_mb:g}, verified (checksums) | {buckets} | {fmt(s, 2)} "
          f"| {gb / s['median']:.2f} | {s['median'] / floor:.2f} |")
    print(f"| floor (flat broadcast + reload) | 1 | {floor:.2f} | {gb / floor:.2f} | 1.00 |")
    print("\nchecksum of all bytes, s: " + ", ".join(
        f"{side} ({result['torch_threads'][side]} threads) {fmt(result[f'{side}_checksum_s'], 2)}"
        for side in ("sender", "receiver")))


if __name__ == "__main__":
    main()

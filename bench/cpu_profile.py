"""Who uses the 2 cores while our job runs: CPU seconds per process and per thread, sampled.

    flock /tmp/r1ray-heavy.lock .venv/bin/python bench/cpu_profile.py [--steps 3] [key=value ...]

Runs our job (bench/run_ours.py) and samples every process once a second (psutil): CPU time per
role (`ray::PolicyTrainer`, `ray::VLLMEngine`, raylet, gcs_server, dashboard, ...), per actor
method (Ray retitles a worker by the method it runs), and how many threads did the work; a `py-spy
dump` of any process caught working on about one core only. A phase that is slower in its actor than bare shows
here as CPU taken by someone else, or as work done on fewer threads than there are cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time

import psutil
from common import ENV, PYTHON, ROOT, save, warn_if_busy

SKIP = {"ps", "sleep", "bash", "flock"}


def py_spy_dump(pid: int, title: str, t: float) -> dict:
    """The Python stacks of a process that works on about one core: what runs single-threaded."""
    done = subprocess.run([os.path.join(ROOT, ".venv", "bin", "py-spy"), "dump", "--pid", str(pid)],
                          capture_output=True, text=True)
    return {"t": round(t, 1), "title": title, "stacks": done.stdout[-6000:] or done.stderr[-500:]}


def title(proc: psutil.Process) -> str:
    cmd = proc.cmdline()
    if not cmd:
        return proc.name()
    if cmd[0].startswith("ray::"):
        return cmd[0]  # ray::PolicyTrainer.update
    name = os.path.basename(cmd[0])
    script = next((os.path.basename(a) for a in cmd[1:] if a.endswith(".py")), "")
    return f"{name} {script}".strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    warn_if_busy()
    out = os.path.join(ROOT, "bench", "runs", f"cpu-profile-{time.strftime('%H%M%S')}.json")
    job = subprocess.Popen([PYTHON, os.path.join(ROOT, "bench", "run_ours.py"), "--out", out, "--config",
                            os.path.join(ROOT, "bench", "grpo_bench.yaml"), f"steps={args.steps}", *args.overrides],
                           cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start, started_at = time.perf_counter(), time.time()
    seen: dict[int, dict] = {}  # pid -> role, CPU s at first sight and now, per thread likewise
    timeline, dumps = [], []
    while job.poll() is None:
        busy: dict[str, float] = {}
        for proc in psutil.process_iter():
            try:
                if proc.pid == os.getpid() or proc.name() in SKIP:
                    continue
                with proc.oneshot():
                    times = proc.cpu_times()
                    cpu = times.user + times.system
                    threads = {t.id: t.user_time + t.system_time for t in proc.threads()}
                    if proc.pid not in seen:  # processes older than the job count from now on
                        new = proc.create_time() >= started_at
                        seen[proc.pid] = {"cpu0": 0.0 if new else cpu, "cpu": 0.0 if new else cpu, "title": "?",
                                          "threads0": {} if new else dict(threads), "threads": {}}
                    entry = seen[proc.pid]
                    entry["title"] = title(proc)  # Ray retitles a worker by the method it runs
                    if entry["title"] != "ray::IDLE" and not entry["title"].endswith("default_worker.py"):
                        entry["role"] = entry["title"].split(".")[0]
                    busy[entry["title"]] = busy.get(entry["title"], 0.0) + cpu - entry["cpu"]
                    entry["cpu"], entry["threads"] = cpu, threads
                    if cpu - entry.get("cpu_at_dump", -60.0) > 30 and 0.8 < cpu - entry.get("last_cpu", cpu) < 1.3:
                        dumps.append(py_spy_dump(proc.pid, entry["title"], time.perf_counter() - start))
                        entry["cpu_at_dump"] = cpu
                    entry["last_cpu"] = cpu
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        shares = {k: round(v, 2) for k, v in busy.items() if v > 0.05}
        timeline.append({"t": round(time.perf_counter() - start, 1), **shares})
        time.sleep(1.0)
    wall = time.perf_counter() - start
    roles: dict[str, dict] = {}
    for entry in seen.values():
        r = roles.setdefault(entry.get("role", entry["title"]), {"cpu_s": 0.0, "processes": 0, "busy_threads": 0})
        r["cpu_s"] += entry["cpu"] - entry["cpu0"]
        r["processes"] += 1
        r["busy_threads"] += sum(1 for tid, s in entry.get("threads", {}).items()
                                 if s - entry["threads0"].get(tid, 0.0) > 1.0)  # threads with > 1 CPU s
    roles = dict(sorted(roles.items(), key=lambda kv: -kv[1]["cpu_s"]))
    # Per phase: the seconds in which one role leads, and what every role used in them (cores busy).
    phases: dict[str, dict] = {}
    for sample in timeline[1:]:
        busy = {k: v for k, v in sample.items() if k != "t"}
        if busy:
            lead = max(busy, key=busy.get)
            phase = phases.setdefault(lead, {"seconds": 0})
            phase["seconds"] += 1
            for k, v in busy.items():
                phase[k] = phase.get(k, 0.0) + v
    save("cpu_profile", {"overrides": args.overrides, "steps": args.steps, "wall_s": wall, "roles": roles,
                         "phases": phases, "timeline": timeline[1:], "py_spy_dumps": dumps})
    print(f"\nwall {wall:.0f} s, {psutil.cpu_count()} cores = {wall * psutil.cpu_count():.0f} CPU s available\n")
    print("| process | CPU s | share of available | threads with > 1 CPU s |\n|---|---:|---:|---:|")
    for name, r in roles.items():
        if r["cpu_s"] >= 1.0:
            share = r['cpu_s'] / (wall * psutil.cpu_count())
            print(f"| {name} | {r['cpu_s']:.0f} | {share:.0%} | {r['busy_threads']} |")
    print("\n| while leading | seconds | cores used by it | by everything else |\n|---|---:|---:|---:|")
    for lead, p in sorted(phases.items(), key=lambda kv: -kv[1]["seconds"]):
        if p["seconds"] >= 3:
            others = sum(v for k, v in p.items() if k not in ("seconds", lead))
            print(f"| {lead} | {p['seconds']} | {p[lead] / p['seconds']:.2f} | {others / p['seconds']:.2f} |")


if __name__ == "__main__":
    main()


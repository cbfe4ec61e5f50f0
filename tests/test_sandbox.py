"""Hostile programs in the code sandbox: each is contained, ends within seconds and leaves the host as it was.

Some protections exist only when the tests run as root (a user id of its own per run, pid and
mount namespaces; see system/rewards/sandbox.py); the checks that depend on them are skipped
otherwise. Programs that must be stopped get a short wall time (the whole file takes seconds);
programs that end by themselves get a long one, so a loaded machine cannot turn them into timeouts.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from system.rewards.code import make_code
from system.rewards.sandbox import Limits, run_python
from system.rewards.sandbox_child import UID_BASE

LIMITS = Limits(wall_s=10.0, cpu_s=10, memory_bytes=256 << 20, output_bytes=1 << 20, processes=8)
SHORT = dataclasses.replace(LIMITS, wall_s=1.5, cpu_s=1)  # for programs that never end by themselves
ROOT = os.geteuid() == 0
root_only = pytest.mark.skipif(not ROOT, reason="needs root: per-run user id and namespaces")


def run(source: str, stdin: str = "", limits: Limits = LIMITS):
    result = run_python(source, stdin, limits)
    assert result.duration_s < limits.wall_s + 5, result
    return result


def sandbox_processes() -> list[int]:
    """Processes running as a sandbox's own user (root mode): none may outlive its run."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _uid(p) >= UID_BASE]


def _uid(pid: str) -> int:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except FileNotFoundError:
        return -1


def test_a_plain_program_runs_and_reads_stdin():
    result = run("import sys\nprint(sum(map(int, sys.stdin.read().split())))", stdin="1 2 3\n")
    assert (result.status, result.stdout, result.returncode) == ("ok", "6\n", 0)


@root_only
def test_as_root_every_layer_applies():
    isolation = run("print(1)").isolation
    assert isolation["network_namespace"] and isolation["namespaces"] and isolation["own_user"] >= UID_BASE


def test_an_exception_is_an_error_with_its_traceback():
    result = run("raise ValueError('boom')")
    assert result.status == "error" and "ValueError: boom" in result.stderr


def test_no_network():
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.2)
        port = server.getsockname()[1]
        connect = f"socket.create_connection(('127.0.0.1', {port}), timeout=1)"
        result = run(f"import socket\n{connect}\nprint('connected')")
        assert result.status == "error" and "connected" not in result.stdout
        with pytest.raises(socket.timeout):
            server.accept()


def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("R1RAY_FAKE_SECRET", "hunter2")
    result = run("import os\nprint(dict(os.environ))")
    assert result.ok and "hunter2" not in result.stdout and "R1RAY_FAKE_SECRET" not in result.stdout


@root_only
def test_parent_environment_is_not_readable_through_proc(monkeypatch):
    monkeypatch.setenv("R1RAY_FAKE_SECRET", "hunter2")
    result = run(f"print(open('/proc/{os.getpid()}/environ').read())\nprint(open('/proc/1/environ').read())")
    assert result.status == "error" and "hunter2" not in result.stdout


@root_only
def test_writing_or_deleting_outside_the_work_dir_fails(tmp_path):
    keep = tmp_path / "keep.txt"
    keep.write_text("precious")
    result = run(
        "import os, shutil\n"
        f"open({str(tmp_path / 'pwned')!r}, 'w').write('x')\n"
        f"os.remove({str(keep)!r})\n"
        f"shutil.rmtree({str(tmp_path)!r})\n"
    )
    assert result.status == "error"  # PermissionError, or not even visible (private /tmp)
    assert keep.read_text() == "precious" and not (tmp_path / "pwned").exists()


@root_only
def test_writes_to_tmp_stay_private_and_cd_out_cannot_write():
    name = f"r1ray-sandbox-escape-{os.getpid()}"
    result = run(f"import os\nopen('/tmp/{name}', 'w').write('x')\nos.chdir('/')\nopen('{name}', 'w')")
    assert result.status == "error" and "PermissionError" in result.stderr
    assert not os.path.exists(f"/tmp/{name}") and not os.path.exists(f"/{name}")


@root_only
def test_shell_commands_cannot_touch_the_host(tmp_path):
    target = tmp_path / "pwned-by-shell"
    result = run(f"__import__('os').system('touch {target}; sudo touch {target}; echo ran')")
    assert "ran" in result.stdout and not target.exists()


def test_fork_bomb_is_bounded():
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    result = run(bomb, limits=SHORT)
    assert result.status in ("timeout", "error")
    if ROOT:  # all reaped, not even zombies left to the host's init
        assert sandbox_processes() == []


def test_allocating_10_gb_is_a_memory_failure():
    result = run("x = bytearray(10 * 1024**3)\nprint('allocated')")
    assert result.status == "memory" and "allocated" not in result.stdout


def test_infinite_loop_is_killed_at_the_time_limit():
    result = run("while True:\n    pass", limits=SHORT)
    assert result.status == "timeout" and result.duration_s >= SHORT.wall_s - 0.5


def test_sleeping_past_the_limit_is_a_timeout():
    result = run("import time\ntime.sleep(60)\nprint('woke')", limits=SHORT)
    assert result.status == "timeout" and "woke" not in result.stdout


def test_a_background_child_does_not_outlive_the_run():
    result = run("import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(20)\nprint('done')")
    assert result.stdout == "done\n"
    if ROOT:
        assert sandbox_processes() == []


@root_only
def test_signalling_the_caller_does_not_reach_it():
    received = []
    previous = signal.signal(signal.SIGUSR1, lambda *args: received.append(True))
    try:
        result = run(
            "import os, signal\n"
            "for pid in (os.getppid(), %d):\n"
            "    try:\n"
            "        os.kill(pid, signal.SIGUSR1)\n"
            "    except OSError as e:\n"
            "        print(type(e).__name__)\n" % os.getpid()
        )
        time.sleep(0.1)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert received == [] and "ProcessLookupError" in result.stdout


def test_printing_100_mb_hits_the_output_cap():
    result = run("import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 1024 * 1024)")
    assert result.status == "output_limit" and len(result.stdout) <= LIMITS.output_bytes


def test_recursion_bombs_fail():
    assert run("def f():\n    return f()\nf()").status == "error"
    deep = run("import sys\nsys.setrecursionlimit(10**9)\ndef f(n):\n    return f(n + 1)\nf(0)", limits=SHORT)
    assert deep.status in ("error", "memory", "timeout")


def test_import_tricks_find_nothing_to_import():
    result = run("import main")  # the program itself, or anything next to the sandbox code
    assert result.status == "error" and "ModuleNotFoundError" in result.stderr
    result = run("import system.rewards.sandbox")
    assert result.status == "error" and "ModuleNotFoundError" in result.stderr


def test_the_code_reward_scores_hostile_programs_zero_and_keeps_serving():
    hostile = [
        "while True:\n    pass",
        "import os\nwhile True:\n    os.fork()",
        "x = bytearray(10 * 1024**3)",
        "while True:\n    print('x' * 10**6)",
        "import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=1)",
    ]
    if ROOT:  # without root the program runs as our user and could signal this very test process
        hostile.append("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)")
    completions = [f"```python\n{p}\n```" for p in hostile]
    n = len(completions)
    assert make_code(limits=SHORT)(completions, inputs=[["1 2"]] * n, outputs=[["3"]] * n) == [0.0] * n
    good = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    scores = make_code(limits=LIMITS)([good, good], inputs=[["1 2"], ["2 2"]], outputs=[["3"], ["4"]])
    assert scores == [1.0, 1.0]


def test_handed_descriptors_reach_the_program_and_no_one_else_keeps_them():
    """A pipe handed to the program (as the code reward links its harness and candidate) is closed
    here at once, and the relay outside the namespaces keeps no copy: the other end sees EOF as
    soon as the program closes it, not when the run ends."""
    read, write = os.pipe()
    program = f"import os, time\nos.write({write}, b'hello')\nos.close({write})\ntime.sleep(4)"
    start = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        run_ = pool.submit(run_python, program, "", LIMITS, (write,))
        received = b""
        while chunk := os.read(read, 100):  # until EOF: every copy of `write` is closed, ours too
            received += chunk
        assert received == b"hello" and time.monotonic() - start < 3
        assert run_.result().ok
    os.close(read)


def test_parallel_runs_do_not_mix():
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: run(f"print(input() * 2, {i})", stdin=f"{i}\n"), range(8)))
    assert [r.stdout for r in results] == [f"{i}{i} {i}\n" for i in range(8)]

"""Run untrusted Python (model-written code) in a separate, limited, throwaway process.

`run_python(source, stdin, limits)` never raises for anything the program does: a crash, a
timeout or an attack is a `SandboxResult` with a failure status, and `result.isolation` says
which of the layers below applied. It is safe to call from many threads at once (the code
reward runs samples in parallel). It raises `SandboxSetupError` only for a host that cannot run
it at all (as root, with Python's files in a private directory and no mount namespace).

What is isolated, always:
- a separate process, `python -I -S` (no environment variables, user site or site-packages read);
  the program's own files live in a fresh temp working dir that is removed afterwards;
- a scrubbed environment: only PATH, LANG, LC_ALL and HOME; no secret of the caller is passed on;
- limits: wall time (the whole process group is killed), CPU time (RLIMIT_CPU), address space
  (RLIMIT_AS), size of any written file (RLIMIT_FSIZE), open files, no core dumps, and output
  (stdout and stderr are read up to `output_bytes`; more kills the program);
- no setuid escalation (PR_SET_NO_NEW_PRIVS: `sudo`, `su` do not work);
- network: a new, empty network namespace (only a down loopback) when the kernel allows it
  (as root it does); otherwise socket creation is patched to raise, which a determined program
  can get around (ctypes, subprocesses).

Additionally, when the caller runs as root (as in most containers):
- a user id of its own per run (1e9 + pid): file permissions protect every file it does not own,
  it cannot signal other processes, and RLIMIT_NPROC caps its processes (a fork bomb stops at
  `processes`; root would ignore that limit);
- where the kernel allows it (as root on a plain host it does; Docker's default seccomp profile
  does not): a new pid namespace, so it sees and can signal only its own processes and all of
  them die with it (no escape by `setsid` or a double fork; without it, what is left is killed
  by user id), and a new mount namespace with private, size-capped tmpfs on /tmp, /var/tmp and
  /dev/shm (its working dir is there), a fresh /proc, and directories its user could not enter
  (like /root) replaced by empty ones: it cannot fill the host's temp space or see its files.

Not isolated: the program can read files that every user may read (/etc, /usr, the repository
if world-readable) and it shares the host kernel (no seccomp filter, no VM). Without root, it
runs as the caller's user: it can write and delete whatever that user can, signal that user's
processes (the reward worker included), read their environments under /proc, and leave a
`setsid` child running; RLIMIT_NPROC counts all of that user's processes. So run reward workers
as root in a container, or at least as a user that owns nothing of value.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Optional

from system.rewards.sandbox_child import UID_BASE

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_child.py")
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": "/tmp"}
STATUSES = ("ok", "timeout", "error", "memory", "output_limit")


class SandboxSetupError(RuntimeError):
    """This host cannot run the sandbox as configured (not something the program did)."""


@dataclass(frozen=True)
class Limits:
    wall_s: float = 10.0
    cpu_s: int = 10
    memory_bytes: int = 1 << 30
    file_bytes: int = 16 << 20  # any one file the program writes
    tmp_bytes: int = 64 << 20  # each private tmpfs (root only)
    processes: int = 8  # effective for non-root users (root: via the per-run user id)
    output_bytes: int = 4 << 20  # stdout and stderr, each
    stderr_chars: int = 4000  # the tail of stderr kept in the result


@dataclass(frozen=True)
class SandboxResult:
    status: str  # one of STATUSES
    stdout: str
    stderr: str  # its last `stderr_chars` characters
    duration_s: float
    returncode: Optional[int] = None  # negative: killed by that signal
    # what applied: network_namespace, namespaces (pid + mount), own_user (its uid, as root)
    isolation: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def run_python(source: str, stdin: str = "", limits: Limits = Limits(), pass_fds=()) -> SandboxResult:
    """Run `source` as a program with `stdin` as its input; wait at most `limits.wall_s`.

    `pass_fds` are handed to the program under the same numbers (pipes to a companion process)
    and closed here once it has them, whatever happens. Raises SandboxSetupError only when this
    host cannot isolate programs at all.
    """
    start = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="r1ray-sandbox-")
    report_read, report_write = os.pipe()  # the child says what isolation it got
    try:
        try:
            proc = _start(workdir, source, stdin, limits, (report_write, *pass_fds))
        except OSError as e:  # the host could not start it (out of processes, memory)
            return SandboxResult("error", "", f"sandbox: {e}", time.monotonic() - start)
        finally:
            for fd in (report_write, *pass_fds):
                os.close(fd)
        with proc:
            status, out, err = _collect(proc, limits, start + limits.wall_s)
            isolation = _read_report(report_read)
            _stop(proc, isolation)
            returncode = proc.wait()
        if isolation.get("own_user") and not isolation.get("namespaces"):
            _kill_user(isolation["own_user"])  # a child that left the process group
    finally:
        os.close(report_read)
        shutil.rmtree(workdir, ignore_errors=True)
    if "error" in isolation:
        raise SandboxSetupError(isolation["error"])
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    return SandboxResult(
        status or _status(returncode, stderr),
        stdout,
        stderr[-limits.stderr_chars :],
        time.monotonic() - start,
        returncode,
        isolation,
    )


def _start(workdir: str, source: str, stdin: str, limits: Limits, fds: tuple) -> subprocess.Popen:
    """The child, handed `fds`: the first is where it reports its isolation."""
    with open(os.path.join(workdir, "main.py"), "w") as f:
        f.write(source)
    with tempfile.TemporaryFile() as input_file:
        input_file.write(stdin.encode())
        input_file.seek(0)
        return subprocess.Popen(
            [sys.executable, "-I", "-S", CHILD, json.dumps(dataclasses.asdict(limits)), str(fds[0])],
            cwd=workdir,
            env=ENV,
            stdin=input_file,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=fds,
            start_new_session=True,  # its own process group, killed as a whole
        )


def _kill_user(uid: int) -> None:
    """Kill every process of the run's own user id (root without a pid namespace to do it)."""
    if uid < UID_BASE:  # never the caller's, nor any real user's
        raise ValueError(f"refusing to kill the processes of uid {uid}")
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            ["kill", "-KILL", "-1"], user=uid, group=uid, extra_groups=[], env=ENV, timeout=5,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )


def _read_report(fd: int) -> dict:
    """What the child reported before the program started (nothing if it was killed before)."""
    os.set_blocking(fd, False)
    try:
        return json.loads(os.read(fd, 1 << 16) or b"{}")
    except (BlockingIOError, ValueError):
        return {}


def _status(returncode: int, stderr: str) -> str:
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):  # the CPU limit, soft then hard
        return "timeout"
    if returncode != 0:
        return "memory" if "MemoryError" in stderr[-2000:] else "error"
    return "ok"


def _collect(proc: subprocess.Popen, limits: Limits, deadline: float) -> tuple[Optional[str], bytes, bytes]:
    """Read stdout and stderr up to the caps until the program exits or the deadline.

    Returns a status if the run was cut short (timeout, output_limit), else None.
    """
    buffers = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    status = None
    with selectors.DefaultSelector() as selector:
        for stream in buffers:
            selector.register(stream, selectors.EVENT_READ)
        while selector.get_map() and status is None:
            events = selector.select(max(0.0, min(deadline - time.monotonic(), 0.1)))
            for key, _ in events:
                data = os.read(key.fd, 1 << 16)
                if not data:
                    selector.unregister(key.fileobj)
                buffers[key.fileobj] += data
                if len(buffers[key.fileobj]) > limits.output_bytes:
                    status = "output_limit"
            if time.monotonic() >= deadline:
                status = status or "timeout"
            elif not events and _exited(proc):
                break  # the program is done; a leftover child may still hold the pipes
    while status is None and not _exited(proc):
        if time.monotonic() >= deadline:
            status = "timeout"
        time.sleep(0.01)
    out, err = buffers.values()
    return status, bytes(out[: limits.output_bytes]), bytes(err[: limits.output_bytes])


def _stop(proc: subprocess.Popen, isolation: dict) -> None:
    """End the run and anything it started, before reaping it (so its group id cannot be reused).

    With namespaces, the process we started only relays: SIGTERM makes it kill the program's pid
    namespace and reap it, leaving no zombie to the host's init; it may take a while on a loaded
    machine. Without a report the child was still setting up: SIGTERM ends it, whatever it is.
    Then SIGKILL to the whole process group, for what is left (everything, without namespaces).
    """
    if isolation.get("namespaces") or not isolation:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        grace = time.monotonic() + (10.0 if isolation else 1.0)
        while not _exited(proc) and time.monotonic() < grace:
            time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _exited(proc: subprocess.Popen) -> bool:
    """Whether the process has exited, without reaping it (its pid stays reserved)."""
    return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None

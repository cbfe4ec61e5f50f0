"""The first code run in a sandbox process: isolate it, then run the untrusted program.

Run by `sandbox.py` as `python -I -S sandbox_child.py LIMITS_JSON REPORT_FD` in a fresh working
dir holding `main.py`. Every step happens before a line of the program runs, and none can be
undone by it. Steps that the kernel or our privileges refuse are skipped for a weaker fallback
(see the `sandbox` module docstring). What was applied is written as JSON to REPORT_FD, which is
closed before the program starts, so the program cannot forge the report.
"""

import ctypes
import json
import os
import resource
import signal
import sys

CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x1000, 0x4000, 0x40000
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
UID_BASE = 1_000_000_000  # + the pid: a user of its own per run, that no file or other run owns
PRIVATE_TMP = ("/tmp", "/var/tmp", "/dev/shm")

libc = ctypes.CDLL(None, use_errno=True)


def call(name, *args) -> bool:
    return getattr(libc, name)(*args) == 0


def mount(source, target, fstype, flags, data=None) -> bool:
    encode = lambda s: None if s is None else s.encode()  # noqa: E731
    return call("mount", encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data))


def report(fd: int, **facts) -> None:
    os.write(fd, json.dumps(facts).encode())
    os.close(fd)


def closed_ancestor(path: str):
    """The first directory on the way to `path` that other users may not enter, or None."""
    parts = os.path.abspath(path).split(os.sep)[1:]
    ancestors = ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]
    return next((p for p in ancestors if not os.stat(p).st_mode & 0o001), None)


def block_sockets() -> None:
    """Fallback without a network namespace: creating a socket raises. A determined program can
    get around this (e.g. through ctypes), unlike a namespace."""
    import socket

    def refuse(*args, **kwargs):
        raise PermissionError("network access is disabled in the sandbox")

    socket.socket = socket.create_connection = socket.socketpair = socket.fromfd = refuse


def enter_private_namespaces(limits: dict) -> bool:
    """As root: a new pid and mount namespace. Returns in the program's process (pid 1 of the
    namespace, so all its descendants die with it); the forked-off parent stays outside to relay
    its exit status, and on SIGTERM kills it and reaps it, so that no zombie is left behind."""
    if not call("unshare", CLONE_NEWPID | CLONE_NEWNS) or not mount(None, "/", None, MS_REC | MS_PRIVATE):
        return False
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    pid = os.fork()
    if pid:
        os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])  # so pipes see the program end
        signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        relay_exit(os.waitpid(pid, 0)[1])
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV)  # shows only this namespace's processes
    stdlib = os.open(sys.base_prefix, os.O_PATH)  # the interpreter's files, to bring back below
    for path in PRIVATE_TMP:
        if os.path.isdir(path):
            mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={limits['tmp_bytes']},mode=1777")
    # A directory the program's user cannot enter (e.g. /root, 0700, over /root/.pyenv) is
    # replaced by an empty one, and the interpreter's own directory is mounted back inside.
    closed = closed_ancestor(sys.base_prefix)
    if closed:
        mount("tmpfs", closed, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
    if closed or not os.path.isdir(sys.base_prefix):
        os.makedirs(sys.base_prefix, exist_ok=True)
        mount(f"/proc/self/fd/{stdlib}", sys.base_prefix, None, MS_BIND | MS_REC)
    os.close(stdlib)
    os.makedirs("/tmp/work", mode=0o777)
    os.chdir("/tmp/work")
    return True


def relay_exit(status: int) -> None:
    """Exit as the child did: with its exit code, or killed by the same signal."""
    if os.WIFSIGNALED(status):
        if os.WTERMSIG(status) != signal.SIGKILL:  # which cannot be caught, nor reset
            signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(status))
    os._exit(os.waitstatus_to_exitcode(status))


def drop_privileges(uid: int) -> None:
    """As root: become a user of our own, so file permissions and the process limit apply."""
    os.chown(".", uid, uid)
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))  # die with the relaying parent (cleared by setuid)


def set_limits(limits: dict) -> None:
    for name, value in (
        ("RLIMIT_CPU", limits["cpu_s"]),
        ("RLIMIT_AS", limits["memory_bytes"]),
        ("RLIMIT_FSIZE", limits["file_bytes"]),
        ("RLIMIT_NPROC", limits["processes"]),
        ("RLIMIT_NOFILE", 64),
        ("RLIMIT_CORE", 0),
    ):
        # the hard CPU limit a second later: SIGKILL, if the program ignores SIGXCPU
        hard = value + 1 if name == "RLIMIT_CPU" else value
        resource.setrlimit(getattr(resource, name), (value, hard))


def main() -> None:
    limits, report_fd = json.loads(sys.argv[1]), int(sys.argv[2])
    with open("main.py") as f:
        source = f.read()
    isolation = {"network_namespace": call("unshare", CLONE_NEWNET), "namespaces": False, "own_user": None}
    if os.geteuid() == 0:
        uid = UID_BASE + os.getpid()
        isolation["namespaces"] = enter_private_namespaces(limits)
        closed = closed_ancestor(sys.base_prefix)
        if closed:  # only without the mount namespace, which would have opened it
            problem = f"the sandbox's user cannot read Python's files under {closed} (mode 0700?)"
            report(report_fd, error=f"{problem} and no mount namespace was allowed; install Python "
                   "where every user can read it")
            os._exit(1)
        drop_privileges(uid)
        isolation["own_user"] = uid
    set_limits(limits)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # no setuid binaries (sudo, su) from here on
    if not isolation["network_namespace"]:
        block_sockets()
    report(report_fd, **isolation)
    sys.argv = ["main.py"]
    program = {"__name__": "__main__", "__file__": "main.py", "__builtins__": __builtins__}
    exec(compile(source, "main.py", "exec"), program)


if __name__ == "__main__":
    main()

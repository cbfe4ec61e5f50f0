"""Both ends of a HumanEval-style test, each run as the program of its own sandbox.

`function_test.py` appends one call to this file's text and runs the result in a sandbox:
`serve(...)` in the candidate's (it runs the model's program, then answers calls of its
functions) and `judge(...)` in the harness's (it runs the row's test and `check`, calling the
candidate through the pipes). Only `repr` texts cross, length-prefixed and read back with
`ast.literal_eval` (never pickle, never eval), at most `limit` bytes each: plain literals, not
objects, so no method of the candidate's (an `__eq__` that is always True) runs in the harness.
"""

import ast
import builtins
import ctypes
import os
import struct
import sys

PASSED_EXIT = 86  # the harness's exit status once check() has returned; nothing else exits so
PR_SET_DUMPABLE = 4
_HEADER = struct.Struct("!I")


class CandidateError(Exception):
    """A call of the candidate raised, or its answer is not one. One type for every failure: an
    exception of the candidate's choice (StopIteration inside a test's `map`) could steer the test."""


class Channel:
    """Length-prefixed `repr` texts over a pair of pipes; what is read is parsed as a literal."""

    def __init__(self, read_fd: int, write_fd: int, limit: int):
        self.read_fd, self.write_fd, self.limit = read_fd, write_fd, limit

    def write(self, text: str) -> None:
        data = text.encode()
        view = memoryview(_HEADER.pack(len(data)) + data)
        while view:
            view = view[os.write(self.write_fd, view) :]

    def read(self):
        """The next literal; EOFError once the other end has closed (or died)."""
        (size,) = _HEADER.unpack(self._exactly(_HEADER.size))
        if size > self.limit:
            raise CandidateError(f"a message of {size} bytes; the limit is {self.limit}")
        return ast.literal_eval(self._exactly(size).decode())

    def _exactly(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = os.read(self.read_fd, min(size - len(data), 1 << 20))
            if not chunk:
                raise EOFError("the other process closed the pipe")
            data += chunk
        return bytes(data)


def serve(program: str, calls_fd: int, answers_fd: int, limit: int) -> None:
    """The candidate's side: run the program, then answer calls until the harness hangs up.
    (This runs next to untrusted code, which may change anything here: it only ever answers.)"""
    sys.set_int_max_str_digits(0)  # a result may be a big int (a factorial): as in a shared script
    names = {"__name__": "__main__", "__builtins__": builtins}
    exec(compile(program, "main.py", "exec"), names)
    channel = Channel(calls_fd, answers_fd, limit)
    while True:
        try:
            name, args, kwargs = channel.read()
        except EOFError:
            return
        try:
            answer = repr(("ok", names[name](*args, **kwargs)))
        except Exception as error:
            answer = repr(("raise", type(error).__name__, str(error)))
        channel.write(answer)


class Remote:
    """The candidate's function `name`: each call goes to its process; the result is a literal."""

    def __init__(self, name: str, channel: Channel):
        self.name, self.channel = name, channel

    def __call__(self, *args, **kwargs):
        self.channel.write(repr((self.name, args, kwargs)))
        reply = self.channel.read()
        if type(reply) is tuple and len(reply) == 2 and reply[0] == "ok":
            return reply[1]
        raise CandidateError(f"the call {self.name}(...) failed in the candidate: {reply!r:.500}")


class TestNames(dict):
    """The test's globals. A name it uses but neither defines nor finds in builtins is a helper
    the original prompt defines (HumanEval's `poly`, `encode_cyclic`): the program's function of
    that name, called remotely, as HumanEval's own harness would take it from the program."""

    def __init__(self, channel: Channel):
        super().__init__(__name__="__main__", __builtins__=builtins)
        self.channel = channel

    def __missing__(self, name: str):
        if hasattr(builtins, name):
            raise KeyError(name)  # the interpreter then takes the builtin
        return Remote(name, self.channel)


def judge(test: str, entry_point: str, calls_fd: int, answers_fd: int, limit: int) -> None:
    """The harness's side: exit with PASSED_EXIT only after check(candidate) returned.

    Not dumpable first, before anything is read: no process of the same user can ptrace this
    one or open its memory and descriptors through /proc."""
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")
    sys.set_int_max_str_digits(0)
    names = TestNames(Channel(answers_fd, calls_fd, limit))
    exec(compile(test, "test.py", "exec"), names)
    check = dict.get(names, "check")  # not __missing__: that would be the candidate's own check
    if not callable(check):
        raise ValueError("the test defines no check(candidate)")
    check(Remote(entry_point, names.channel))
    os._exit(PASSED_EXIT)

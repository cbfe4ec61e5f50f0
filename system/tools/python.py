"""The `python` tool: the model's code runs in the sandbox (system/rewards/sandbox.py), and what it
prints comes back as the tool message, as in ToRL and SimpleTIR. Code is never run in the env
worker itself: a separate, limited, throwaway process per call, without network.

A program that fails (an exception, a timeout, too much memory or output) is a tool error: the
model reads what happened (the end of the traceback, or which limit it hit).
"""

from __future__ import annotations

from system.rewards.sandbox import Limits, run_python
from system.tools.base import Tool, ToolError, register_tool

LIMITS = Limits(wall_s=5.0, cpu_s=5, memory_bytes=512 << 20, output_bytes=64 << 10, stderr_chars=600)
FAILURES = {
    "timeout": "The program did not finish within {wall_s:g} s and was stopped.",
    "memory": "The program ran out of memory ({memory_mib} MiB) and was stopped.",
    "output_limit": "The program printed more than {output_kib} KiB and was stopped.",
}


def python_tool(limits: Limits = LIMITS, max_chars: int = 1000) -> Tool:
    """A python tool with its own sandbox limits; results longer than `max_chars` are cut."""

    def python(code: str) -> str:
        result = run_python(code, limits=limits)
        if result.ok:
            return result.stdout if result.stdout.strip() else "(no output: print() what you want to see)"
        if result.status in FAILURES:
            sizes = {"memory_mib": limits.memory_bytes >> 20, "output_kib": limits.output_bytes >> 10}
            raise ToolError(FAILURES[result.status].format(wall_s=limits.wall_s, **sizes))
        failed = f"The program failed (exit code {result.returncode})."
        raise ToolError(f"{result.stdout}{program_frames(result.stderr)}" or failed)

    parameters = {"type": "object", "required": ["code"],
                  "properties": {"code": {"type": "string", "description": "A complete Python 3 program."}}}
    description = ("Run a Python 3 program and return what it prints. Standard library only, no network, "
                   f"at most {limits.wall_s:g} seconds.")
    return Tool("python", description, parameters, python, max_chars)


def program_frames(stderr: str) -> str:
    """A traceback from the program's first frame on: the sandbox's frames above it tell the model nothing."""
    lines = stderr.strip().splitlines()
    first = next((i for i, line in enumerate(lines) if line.lstrip().startswith('File "main.py"')), 0)
    return "\n".join(lines[first:])


register_tool("python")(python_tool())

"""Writes the report of a run directory on demand: its curves (report.png) and sample completions
per eval (samples.md), e.g. for a run still going, or one that stopped before writing its own.

    python launcher/report.py RUN_DIR
"""

from __future__ import annotations

import argparse
import sys

from system.reporting.run_report import write_report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write report.png and samples.md into a run directory.")
    parser.add_argument("run_dir", help="a run directory, holding metrics.jsonl")
    args = parser.parse_args(argv)
    try:
        paths = write_report(args.run_dir)
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()

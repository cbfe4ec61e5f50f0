"""Which node each named actor of a running job lives on: waits until all are alive, prints them,
and fails if they share one node (scripts/two_node_cluster.sh checks the placement with it)."""

from __future__ import annotations

import argparse
import sys
import time

import ray
from ray.util.state import list_actors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--wait", nargs="+", required=True, help="actor names")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    ray.init(address=args.address, logging_level="ERROR")
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        actors = list_actors(args.address, filters=[("state", "=", "ALIVE")])
        alive = {a.name: a.node_id for a in actors if a.name in args.wait}
        if len(alive) == len(args.wait):
            for name, node in sorted(alive.items()):
                print(f"{name}: node {node[:8]}")
            if len(set(alive.values())) < len(alive):
                sys.exit("the actors share a node")
            print("placement: each on its own node")
            return
        time.sleep(1)
    sys.exit(f"not all of {args.wait} were alive within {args.timeout:.0f} s")


if __name__ == "__main__":
    main()

"""The ``airflow-batches`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="airflow-batches")
    parser.add_argument("command", choices=["emulator", "estimate", "version"])
    if not args or args[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    ns = parser.parse_args(args[:1])
    if ns.command == "version":
        from airflow_batches import __version__

        print(__version__)
        return 0
    if ns.command == "estimate":
        from airflow_batches.jobs.cost import estimate_main

        return estimate_main(args[1:])
    from airflow_batches.emulator.cli import main as emulator_main

    return int(emulator_main(args[1:]))


if __name__ == "__main__":
    raise SystemExit(main())

"""``airflow-batches emulator`` and ``python -m airflow_batches.emulator``."""

from __future__ import annotations

import argparse
import json
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from airflow_batches.emulator.config import EmulatorConfig, deep_merge


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="airflow-batches emulator",
        description="Serve a local emulator of the Message Batches API.",
    )
    p.add_argument("--config", type=Path, help="a .toml or .json file of EmulatorConfig fields")
    p.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8089; 0 picks a free one)")
    p.add_argument("--data-dir", type=Path, help="where batches and results are kept")
    p.add_argument(
        "--workspace",
        action="append",
        metavar="NAME=KEY[,KEY...]",
        help="a workspace and its API keys (repeatable; replaces the default workspace)",
    )
    p.add_argument("--latency", type=float, help="real seconds each request takes")
    p.add_argument("--workers", type=int, help="concurrent workers")
    p.add_argument("--time-scale", type=float, help="emulated seconds per real second")
    p.add_argument("--seed", type=int, help="seed of every random choice")
    p.add_argument("--max-requests-per-batch", type=int)
    p.add_argument("--max-body-bytes", type=int)
    p.add_argument("--max-queued-requests", type=int)
    p.add_argument("--responder", help="module:callable producing each Message")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=JSON",
        help="any other setting, dotted, value as JSON or text "
        "(e.g. --set faults.create.rate_529=0.1 --set delete_unfinished=allow)",
    )
    p.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    return p


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _dotted(assignment: str) -> dict[str, Any]:
    name, sep, raw = assignment.partition("=")
    if not sep or not name:
        raise ValueError(f"--set expects FIELD=VALUE, got {assignment!r}")
    value: Any = _value(raw)
    for part in reversed(name.split(".")):
        value = {part: value}
    result: dict[str, Any] = value
    return result


def build_config(args: argparse.Namespace) -> EmulatorConfig:
    overrides: dict[str, Any] = {}
    flags = {
        "host": args.host,
        "port": args.port,
        "data_dir": str(args.data_dir) if args.data_dir else None,
        "latency": args.latency,
        "workers": args.workers,
        "time_scale": args.time_scale,
        "seed": args.seed,
        "max_requests_per_batch": args.max_requests_per_batch,
        "max_body_bytes": args.max_body_bytes,
        "max_queued_requests": args.max_queued_requests,
        "responder": args.responder,
    }
    overrides.update({k: v for k, v in flags.items() if v is not None})
    if args.workspace:
        spaces: dict[str, list[str]] = {}
        for item in args.workspace:
            name, sep, keys = item.partition("=")
            if not sep or not name or not keys:
                raise ValueError(f"--workspace expects NAME=KEY[,KEY...], got {item!r}")
            spaces.setdefault(name, []).extend(k for k in keys.split(",") if k)
        overrides["workspaces"] = spaces
    for assignment in args.set:
        overrides = deep_merge(overrides, _dotted(assignment))
    if args.config:
        config = EmulatorConfig.load(args.config)
        # Flags win over the file, and replace whole workspace maps rather than merging.
        data = config.model_dump(mode="json")
        if "workspaces" in overrides:
            data.pop("workspaces")
        return EmulatorConfig.model_validate(deep_merge(data, overrides))
    return EmulatorConfig.model_validate(overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        config = build_config(args)
    except (ValueError, ValidationError, OSError) as exc:
        print(f"airflow-batches emulator: {exc}", file=sys.stderr)
        return 2

    import uvicorn

    from airflow_batches.emulator.app import create_app

    sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as exc:
        print(f"airflow-batches emulator: cannot listen on {config.host}:{config.port}: {exc}")
        return 1
    sock.listen(128)
    port = sock.getsockname()[1]
    app = create_app(config)
    emulator = app.state.emulator
    shown_host = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
    if ":" in shown_host:
        shown_host = f"[{shown_host}]"
    print(f"Message Batches emulator on http://{shown_host}:{port}", flush=True)
    print(f"  base URL : http://{shown_host}:{port}")
    print(f"  API key  : {config.default_key}")
    for name, keys in config.workspaces.items():
        print(f"  workspace {name}: {', '.join(keys)}")
    print(f"  data dir : {emulator.data_dir}")
    print(f"  admin    : http://{shown_host}:{port}/_emulator/stats", flush=True)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level=args.log_level,
            lifespan="on",
            timeout_graceful_shutdown=5,
            date_header=False,  # the app sends its own clock's
        )
    )
    server.run(sockets=[sock])
    return 0

"""A distributed live Airflow: CeleryExecutor on Redis, PostgreSQL, S3 (moto), the emulator.

What users run when they outgrow one machine, on this one: api-server, scheduler and
dag-processor, two Celery workers and two triggerers, each a process group of its own with
its own ``AIRFLOW_HOME`` (so nothing can pass between tasks through a local folder) and its
own hostname. PostgreSQL and Redis come from ``scripts/services.py`` (installed with apt when
missing), S3 and the emulator from ``tests/e2e/servers.py``. Everything listens on 127.0.0.1
on free ports, keeps its data in temporary folders and stops by process id, also when the
test fails.

    with distributed_stack(dags_folder, emulator_config={...}) as stack:
        run_id = stack.airflow.trigger("my_dag")
        stack.airflow.kill_component("worker-1")      # a worker machine lost
        stack.airflow.restart_component("triggerer-2")

By hand (``make stack``): ``python -m tests.e2e.distributed up`` starts it with the example
DAG and prints where everything is, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.processes import wait_for_signal
from scripts.services import Services, running_services
from tests.e2e.hostnames.e2e_hostname import ENV as HOSTNAME_ENV
from tests.e2e.live import KEEP_HOME_ENV, ComponentSpec, LiveAirflow, LiveAirflowError
from tests.e2e.servers import EmulatorServer, MotoS3

HOSTNAMES = Path(__file__).parent / "hostnames"
REPO = Path(__file__).resolve().parents[2]
S3_CONN_ID = "aws_stack"
WORKER, TRIGGERER = "worker", "triggerer"
# Celery prints this line when a worker has connected to the broker and takes tasks.
_WORKER_READY = " ready."


class DistributedAirflow(LiveAirflow):
    """A :class:`LiveAirflow` on PostgreSQL with the CeleryExecutor and several workers and
    triggerers, named ``worker-1``... and ``triggerer-1``...

    :param services: the running PostgreSQL and Redis (``scripts.services.running_services``).
    :param worker_concurrency: task slots of each Celery worker.
    :param heartbeat_timeout: ``[scheduler] task_instance_heartbeat_timeout``: how soon a task
        whose worker died is failed (and retried). Airflow's default, 300 s, would leave a
        killed worker's tasks "running" for five minutes.
    """

    home_prefix = "airflow-batches-dist-"

    def __init__(
        self,
        dags_folder: Path | str,
        *,
        services: Services,
        env: Mapping[str, str] | None = None,
        workers: int = 2,
        triggerers: int = 2,
        worker_concurrency: int = 6,
        heartbeat_timeout: float = 20.0,
        pythonpath: Sequence[Path | str] = (),
        startup_timeout: float = 300.0,
    ) -> None:
        super().__init__(
            dags_folder,
            env=env,
            # Only the hostname callable: the DAGs and our package are not made importable.
            pythonpath=[*pythonpath, HOSTNAMES],
            parallelism=max(32, 4 * workers * worker_concurrency),
            startup_timeout=startup_timeout,
        )
        self.services = services
        self.worker_names = [f"{WORKER}-{i}" for i in range(1, workers + 1)]
        self.triggerer_names = [f"{TRIGGERER}-{i}" for i in range(1, triggerers + 1)]
        self.worker_concurrency = worker_concurrency
        self.heartbeat_timeout = heartbeat_timeout
        self._log_offsets: dict[str, int] = {}

    def component_specs(self) -> list[ComponentSpec]:
        specs = [
            ComponentSpec(s.name, s.args, kind=s.kind, home=self.home / s.name)
            for s in super().component_specs()
            if s.kind != TRIGGERER
        ]
        for name in self.worker_names:
            args = ("celery", "worker", "--concurrency", str(self.worker_concurrency))
            # Each worker its own Celery node name; no log server (two would want one port).
            args += ("--celery-hostname", name, "--skip-serve-logs")
            args += ("--without-mingle", "--without-gossip")
            specs.append(self._own(name, WORKER, args))
        for name in self.triggerer_names:
            specs.append(self._own(name, TRIGGERER, ("triggerer", "--skip-serve-logs")))
        return specs

    def _own(self, name: str, kind: str, args: tuple[str, ...]) -> ComponentSpec:
        return ComponentSpec(name, args, kind=kind, env={HOSTNAME_ENV: name}, home=self.home / name)

    def _stack_env(self) -> dict[str, str]:
        pg, redis = self.services.postgres, self.services.redis
        timeout = f"{self.heartbeat_timeout:g}"
        return {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            # psycopg2 spelled out: SQLAlchemy 2.1 would pick psycopg 3. Airflow derives its
            # async engine from this URL (postgresql+asyncpg), hence asyncpg in the test deps.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg.url("postgresql+psycopg2"),
            "AIRFLOW__CELERY__BROKER_URL": redis.url(),
            # Same reason; the Celery provider reports the ImportError of a wrong driver as a
            # missing result backend.
            "AIRFLOW__CELERY__RESULT_BACKEND": pg.url("db+postgresql+psycopg2"),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
            # A task a killed worker had taken but not yet started stays "queued" until the
            # broker hands it out again, after this (the provider's default: a day). It must
            # stay above the longest task, or a running task is handed out twice.
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "120",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": timeout,
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "e2e_hostname.hostname",
            # Busy 2-core machines are slow to pick queued tasks; never fail them for it.
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "900",
        }

    def _spawn(self, spec: ComponentSpec) -> None:
        log_path = self.home / "components" / f"{spec.name}.log"
        # Readiness is judged on what this start of the component writes, not an earlier one.
        self._log_offsets[spec.name] = log_path.stat().st_size if log_path.exists() else 0
        super()._spawn(spec)

    def new_output(self, name: str) -> str:
        """What the component wrote since it was last started."""
        return self.component_log(name)[self._log_offsets.get(name, 0) :]

    def _not_ready(self) -> str | None:
        reason = super()._not_ready()
        if reason is not None:
            return reason
        for name in self.worker_names:
            if name not in self._down and _WORKER_READY not in self.new_output(name):
                return f"Celery worker {name} has not said it is ready"
        alive = set(self.alive_triggerers())
        missing = [n for n in self.triggerer_names if n not in self._down and n not in alive]
        return f"triggerer(s) {missing} not running" if missing else None

    def alive_triggerers(self) -> dict[str, int]:
        """``{hostname: job id}`` of the triggerer jobs Airflow considers alive."""
        jobs = self.api(
            "GET", "jobs", query={"job_type": "TriggererJob", "is_alive": "true", "limit": 100}
        )
        return {str(j["hostname"]): int(j["id"]) for j in jobs.get("jobs", [])}

    def wait_ready(self, *, timeout: float = 120.0) -> None:
        """Wait until every component that is not down on purpose is ready again."""
        deadline = time.monotonic() + timeout
        while (reason := self._not_ready()) is not None:
            self.check_components()
            if time.monotonic() > deadline:
                raise LiveAirflowError(
                    f"stack not ready after {timeout:.0f}s: {reason}\n" + self.component_logs_tail()
                )
            time.sleep(0.5)

    def task_instances_all(self, dag_id: str, **query: Any) -> list[dict[str, Any]]:
        """Task instances of every run of ``dag_id`` (``state=[...]`` filters)."""
        return self._paged(f"dags/{dag_id}/dagRuns/~/taskInstances", "task_instances", query)

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self._paged(f"dags/{dag_id}/dagRuns", "dag_runs", {})

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.api("GET", path, query={"deserialize": "true"}).get("value")


@dataclass
class DistributedStack:
    """Everything :func:`distributed_stack` started."""

    airflow: DistributedAirflow
    services: Services
    s3: MotoS3
    emulator: EmulatorServer
    bucket: str
    root: Path

    def staging_uri(self) -> str:
        return f"s3://{self.bucket}/staging"


@contextlib.contextmanager
def distributed_stack(
    dags_folder: Path | str,
    *,
    env: Mapping[str, str] | None = None,
    emulator_config: Mapping[str, Any] | None = None,
    bucket: str = "airflow-batches",
    workers: int = 2,
    triggerers: int = 2,
    worker_concurrency: int = 6,
    heartbeat_timeout: float = 20.0,
) -> Iterator[DistributedStack]:
    """The whole distributed stack for the ``with`` block, stopped (all of it) after it.

    The components get the emulator as ``message_batches_default``, S3 as ``aws_stack``, and
    ``[airflow_batches] staging_path`` on that S3; ``env`` comes on top.
    """
    root = Path(tempfile.mkdtemp(prefix="airflow-batches-stack-"))
    try:
        with contextlib.ExitStack() as exits:
            services = exits.enter_context(running_services())
            s3 = MotoS3(root)
            exits.callback(s3.stop)
            s3.start()
            s3.client().create_bucket(Bucket=bucket)
            emulator = EmulatorServer(root / "emulator", emulator_config)
            exits.callback(emulator.stop)
            emulator.start()
            stack_env = {
                "AIRFLOW_CONN_MESSAGE_BATCHES_DEFAULT": emulator.connection(),
                f"AIRFLOW_CONN_{S3_CONN_ID.upper()}": s3.conn(),
                "AIRFLOW__AIRFLOW_BATCHES__STAGING_PATH": f"s3://{bucket}/staging",
                "AIRFLOW__AIRFLOW_BATCHES__STAGING_CONN_ID": S3_CONN_ID,
                **(env or {}),
            }
            airflow = DistributedAirflow(
                dags_folder,
                services=services,
                env=stack_env,
                workers=workers,
                triggerers=triggerers,
                worker_concurrency=worker_concurrency,
                heartbeat_timeout=heartbeat_timeout,
            )
            exits.callback(airflow.stop)
            airflow.start()
            yield DistributedStack(airflow, services, s3, emulator, bucket, root)
    finally:
        if not os.environ.get(KEEP_HOME_ENV):
            shutil.rmtree(root, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.e2e.distributed",
        description="Run the distributed live stack until Ctrl-C (see docs/deploying.md).",
    )
    parser.add_argument("command", choices=["up"])
    parser.add_argument("--dags", type=Path, default=REPO / "dags_examples")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--triggerers", type=int, default=2)
    args = parser.parse_args(argv)
    bucket = "airflow-batches"
    env = {
        # What the example DAG reads; the connection id rides in the URI.
        "AIRFLOW_BATCHES_STAGING": f"s3://{S3_CONN_ID}@{bucket}/staging",
        "AIRFLOW_BATCHES_RESULTS": f"s3://{S3_CONN_ID}@{bucket}/results",
        "AIRFLOW_BATCHES_CACHE": f"s3://{S3_CONN_ID}@{bucket}/cache",
    }
    print("Starting PostgreSQL, Redis, S3, the emulator and Airflow (about a minute)...")
    with distributed_stack(
        args.dags,
        env=env,
        bucket=bucket,
        workers=args.workers,
        triggerers=args.triggerers,
        emulator_config={
            "latency": 0.05,
            "workers": 4,
            # The example DAG is a nightly eval: answers it can score (docs/evals.md).
            "responder": "airflow_batches.emulator.evalset:eval_responder",
            "responder_options": {"error_rates": {"claude-haiku-4-5": 0.15}},
        },
    ) as stack:
        af = stack.airflow
        print(f"Airflow UI and API : {af.base_url}  (every user is admin)")
        print(f"DAGs folder        : {af.dags_folder}")
        print(f"components         : {', '.join(af.component_names)}")
        print(f"PostgreSQL         : {stack.services.postgres.url()}")
        print(f"Redis (broker)     : {stack.services.redis.url()}")
        print(f"S3 (moto)          : {stack.s3.endpoint}, bucket {bucket}, conn {S3_CONN_ID}")
        print(f"emulator           : {stack.emulator.base_url}  (admin: /_emulator/stats)")
        print(f"logs               : {af.home}/components, {af.home}/<component>/logs")
        print("Ctrl-C stops everything.")
        wait_for_signal(af.check_components)
    print("Stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

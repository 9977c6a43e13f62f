"""The scale scenario on the distributed stack: concurrent runs, a worker lost, a triggerer
restarted; then the figures that say what it cost.

1. Every run of ``scale_jobs`` (tests/e2e/scale_dags) starts at once. The emulator holds every
   create answer back (``rate_slow``) and processes nothing yet (``paused``).
2. As soon as a worker runs submit tasks that are inside their create call (intent saved,
   create sent, answer held back), that worker is SIGKILLed with all its processes (a machine
   lost); it comes back at once.
   Airflow fails its tasks after the heartbeat timeout and retries them.
3. When every sensor is deferred, the triggerer holding most of them is restarted; the test
   waits until their waits run again on a triggerer.
4. The emulator resumes; the runs finish.

Every custom_id starts with its run's tag, and the emulator's admin view gives each batch's
requests, so every batch is traced to the run it belongs to.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.e2e.distributed import DistributedStack
from tests.e2e.live import LiveAirflowError

DAG_ID = "scale_jobs"
JOBS = ("inline", "file", "resub")
FILE_REQUESTS = 40
# What SubmitBatchOperator logs between writing a shard's intent and sending its create.
_CREATING = "creating a batch of"
# Airflow's block watchdog (the trigger runner's event loop), logged past 0.2 s by default.
_BLOCKED = re.compile(r"Triggerer's async thread was blocked for ([0-9.]+) seconds")


def tag_of(custom_id: str) -> str:
    return custom_id.split("-", 1)[0]


def expected_ids(tag: str, job: str, sizes: dict[str, int]) -> set[str]:
    return {f"{tag}-{job}-{i}" for i in range(sizes[job])}


@dataclass
class Figures:
    runs: int = 0
    runs_succeeded: int = 0
    run_states: dict[str, str] = field(default_factory=dict)
    task_retries: int = 0
    retries_by_task: dict[str, int] = field(default_factory=dict)
    killed_worker: str = ""
    killed_in_create: list[str] = field(default_factory=list)
    kill_recovery_seconds: float = 0.0
    restarted_triggerer: str = ""
    waits_on_restarted: int = 0
    waits_moved: int = 0
    restart_recovery_seconds: float = 0.0
    batches_created: int = 0
    create_calls: int = 0
    batches_named: int = 0
    duplicates: int = 0
    orphans: list[str] = field(default_factory=list)
    """Batches no run names: each must be a possible orphan the registry recorded."""
    recorded_orphans: list[str] = field(default_factory=list)
    """The registry's possible orphans (candidates a retry could not adopt unambiguously)."""
    named_twice: list[str] = field(default_factory=list)
    adopted_across_runs: list[str] = field(default_factory=list)
    canceled_batches: list[str] = field(default_factory=list)
    requests: int = 0
    result_lines: int = 0
    own_lines: int = 0
    lost: int = 0
    foreign_lines: int = 0
    incomplete_manifests: list[str] = field(default_factory=list)
    longest_block: float = 0.0
    blocks_over_threshold: int = 0
    wall_seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)

    def render(self) -> str:
        retries = ", ".join(f"{k} {v}" for k, v in sorted(self.retries_by_task.items()) if v)
        lines = [
            f"runs succeeded          : {self.runs_succeeded}/{self.runs}"
            f" (task retries: {self.task_retries}{'; ' + retries if retries else ''})",
            f"worker killed           : {self.killed_worker} with"
            f" {len(self.killed_in_create)} submit(s) inside create: {self.killed_in_create};"
            f" they succeeded {self.kill_recovery_seconds:.0f} s after the kill",
            f"triggerer restarted     : {self.restarted_triggerer} holding"
            f" {self.waits_on_restarted} wait(s); {self.waits_moved} started again by a new"
            f" triggerer job within {self.restart_recovery_seconds:.0f} s",
            f"batches created         : {self.batches_created} ({self.create_calls} create calls)"
            f" against {self.batches_named} named by the runs: duplicates {self.duplicates}"
            + (f" (never read: {self.orphans})" if self.orphans else ""),
            f"possible orphans recorded: {len(self.recorded_orphans)}"
            + (f" {self.recorded_orphans}" if self.recorded_orphans else "")
            + "; extra batches paid: "
            + str(len(self.orphans)),
            f"batches adopted across runs: {len(self.adopted_across_runs)}"
            + (f" {self.adopted_across_runs}" if self.adopted_across_runs else ""),
            f"batches named twice     : {len(self.named_twice)}"
            + (f" {self.named_twice}" if self.named_twice else ""),
            f"result lines            : {self.result_lines} for {self.requests} requests:"
            f" own {self.own_lines}, lost {self.lost}, another run's or job's"
            f" {self.foreign_lines}",
            f"incomplete manifests    : {self.incomplete_manifests or 0}",
            f"batches canceled        : {len(self.canceled_batches)}",
            f"longest event-loop block: {self.longest_block:.2f} s in the triggerers"
            f" ({self.blocks_over_threshold} warning(s) over 0.2 s; goal: none)",
            f"wall time               : {self.wall_seconds:.0f} s ("
            + ", ".join(f"{k} {v:.0f} s" for k, v in self.phases.items())
            + ")",
        ]
        return "\n".join(lines)


class ScaleScenario:
    def __init__(
        self,
        stack: DistributedStack,
        *,
        runs: int,
        sizes: dict[str, int],
        slow_create_seconds: float = 6.0,
        log: Callable[[str], None] = print,
    ) -> None:
        self.stack = stack
        self.af = stack.airflow
        self.runs = runs
        self.sizes = sizes
        self.slow_create_seconds = slow_create_seconds
        self.log = log
        self.tags = [f"r{i:02d}" for i in range(runs)]
        self.run_ids = {tag: f"scale-{tag}" for tag in self.tags}
        self.figures = Figures(runs=runs)
        self.trigger_snapshot: list[dict[str, Any]] = []
        self._began = 0.0
        self._killed_at: datetime | None = None
        self._mark = 0.0

    # ------------------------------------------------------------------ the run

    def _phase(self, name: str) -> None:
        now = time.monotonic()
        self.figures.phases[name] = now - self._mark
        self._mark = now
        self.log(f"[scale] {name} done after {now - self._began:.0f} s")

    def upload_inputs(self) -> None:
        client = self.stack.s3.client()
        for tag in self.tags:
            body = "".join(
                json.dumps(
                    {
                        "custom_id": f"{tag}-file-{i}",
                        "params": {"messages": [{"role": "user", "content": f"file {i}"}]},
                    }
                )
                + "\n"
                for i in range(self.sizes["file"])
            )
            client.put_object(Bucket=self.stack.bucket, Key=f"in/{tag}.jsonl", Body=body.encode())

    def run(self, *, timeout: float) -> Figures:
        emulator = self.stack.emulator
        self.upload_inputs()
        self._began = self._mark = time.monotonic()
        emulator.configure(
            paused=True,
            faults={"create": {"rate_slow": 1.0, "slow_seconds": self.slow_create_seconds}},
        )
        for tag in self.tags:
            self.af.trigger(DAG_ID, conf={"tag": tag}, run_id=self.run_ids[tag])
        self.kill_a_worker_mid_submit()
        emulator.configure(faults={})
        self._phase("submit and kill")
        self.af.start_component(self.figures.killed_worker)
        self.restart_a_triggerer_mid_wait()
        self._phase("defer and restart")
        emulator.configure(paused=False)
        self.wait_for_runs(deadline=self._began + timeout)
        self._phase("process and fetch")
        self.figures.wall_seconds = time.monotonic() - self._began
        self.collect()
        return self.figures

    def _running_submits_in_create(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = defaultdict(list)
        for ti in self.af.task_instances_all(DAG_ID, state=["running"]):
            if not ti["task_id"].startswith("submit_") or ti["hostname"] not in self.workers:
                continue
            text = self.af.task_log(DAG_ID, ti["dag_run_id"], ti["task_id"], ti["try_number"])
            shard_lines = [line for line in text.splitlines() if "Shard " in line]
            # The submit logs this after saving the intent, right before the create call,
            # whose answer the emulator now holds back for seconds.
            if shard_lines and _CREATING in shard_lines[-1]:
                found[ti["hostname"]].append(f"{ti['dag_run_id']}/{ti['task_id']}")
        return found

    @property
    def workers(self) -> list[str]:
        return self.af.worker_names

    def kill_a_worker_mid_submit(self, *, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        settle = time.monotonic() + 20.0
        want = 2 if self.runs > 1 else 1
        while True:
            self.af.check_components()
            in_create = self._running_submits_in_create()
            if in_create:
                worker = max(in_create, key=lambda w: len(in_create[w]))
                if len(in_create[worker]) >= want or time.monotonic() > settle:
                    break
            if time.monotonic() > deadline:
                raise LiveAirflowError(
                    f"no submit task was seen inside its create call within {timeout:.0f}s\n"
                    + self.af.component_logs_tail()
                )
            time.sleep(0.3)
        self._killed_at = datetime.now(UTC)
        self.af.kill_component(worker)
        self.figures.killed_worker = worker
        self.figures.killed_in_create = sorted(in_create[worker])
        self.log(f"[scale] killed {worker} (kill -9, every process) during {in_create[worker]}")

    def _waits(self) -> list[dict[str, Any]]:
        return [
            ti for ti in self.af.task_instances_all(DAG_ID) if ti["task_id"].startswith("wait_")
        ]

    def restart_a_triggerer_mid_wait(self, *, timeout: float = 300.0) -> None:
        expected = self.runs * len(JOBS)
        deadline = time.monotonic() + timeout
        while True:
            self.af.check_components()
            waits = self._waits()
            held = [
                ti
                for ti in waits
                if ti["state"] == "deferred" and (ti.get("triggerer_job") or {}).get("hostname")
            ]
            if len(held) == expected:
                break
            if time.monotonic() > deadline:
                states = Counter(str(ti["state"]) for ti in waits)
                raise LiveAirflowError(
                    f"only {len(held)} of {expected} waits deferred to a triggerer after"
                    f" {timeout:.0f}s (wait states: {dict(states)})\n"
                    + self.af.component_logs_tail()
                )
            time.sleep(1.0)
        # The trigger rows exist only while the waits are deferred: read them now.
        self.trigger_snapshot = self.stack_trigger_rows()
        by_host: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for ti in held:
            by_host[ti["triggerer_job"]["hostname"]].append(ti)
        target = max(by_host, key=lambda h: len(by_host[h]))
        old_job = by_host[target][0]["triggerer_job"]["id"]
        self.figures.restarted_triggerer = target
        self.figures.waits_on_restarted = len(by_host[target])
        self.log(f"[scale] restarting {target} (job {old_job}), holding {len(by_host[target])}")
        restarted = time.monotonic()
        self.af.restart_component(target)
        self.af.wait_ready()
        moved_from = {(ti["dag_run_id"], ti["task_id"]) for ti in by_host[target]}
        deadline = time.monotonic() + timeout
        while True:
            self.af.check_components()
            moved = sum(
                1
                for run_id, task_id in moved_from
                if self._trigger_jobs(run_id, task_id) - {old_job}
            )
            if moved == len(moved_from):
                self.figures.restart_recovery_seconds = time.monotonic() - restarted
                break
            if time.monotonic() > deadline:
                break  # the figures say how many moved; the run states say if they ended
            time.sleep(1.0)
        self.figures.waits_moved = moved

    def _trigger_jobs(self, run_id: str, task_id: str) -> set[int]:
        """Ids of the triggerer jobs that started this wait's trigger (from the log names)."""
        jobs = set()
        for folder in self.af.log_folders():
            path = folder / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={task_id}"
            for log in path.glob("attempt=1.log.trigger.*.log"):
                if "starting" in log.read_text(errors="replace"):
                    jobs.add(int(log.name.rsplit(".", 2)[-2]))
        return jobs

    def stack_trigger_rows(self) -> list[dict[str, Any]]:
        from tests.e2e.hygiene import trigger_kwargs

        return trigger_kwargs(
            self.stack.services.postgres, self.af.env["AIRFLOW__CORE__FERNET_KEY"]
        )

    def wait_for_runs(self, *, deadline: float) -> None:
        while True:
            self.af.check_components()
            states = {r["dag_run_id"]: r["state"] for r in self.af.runs(DAG_ID)}
            if all(states.get(rid) in ("success", "failed") for rid in self.run_ids.values()):
                return
            if time.monotonic() > deadline:
                unfinished = {k: v for k, v in states.items() if v not in ("success", "failed")}
                raise LiveAirflowError(
                    f"runs still unfinished: {unfinished}\n" + self.af.component_logs_tail()
                )
            time.sleep(2.0)

    # ------------------------------------------------------------------ the figures

    def collect(self) -> None:
        f = self.figures
        states = {r["dag_run_id"]: str(r["state"]) for r in self.af.runs(DAG_ID)}
        f.run_states = {tag: states.get(rid, "missing") for tag, rid in self.run_ids.items()}
        f.runs_succeeded = sum(1 for s in f.run_states.values() if s == "success")
        retries: Counter[str] = Counter()
        for ti in self.af.task_instances_all(DAG_ID):
            retries[ti["task_id"]] += max(0, int(ti["try_number"]) - 1)
        f.retries_by_task = dict(retries)
        ends = [
            datetime.fromisoformat(ti["end_date"])
            for ti in self.af.task_instances_all(DAG_ID)
            if f"{ti['dag_run_id']}/{ti['task_id']}" in f.killed_in_create
            and ti["state"] == "success"
            and ti["end_date"]
        ]
        if self._killed_at is not None and len(ends) == len(f.killed_in_create):
            f.kill_recovery_seconds = (max(ends) - self._killed_at).total_seconds()
        f.task_retries = sum(retries.values())

        admin = self.stack.emulator.admin
        f.batches_created = admin.batches_created()
        f.create_calls = admin.create_calls()
        owner = {}
        for batch in admin.batches():
            tags = {tag_of(item["custom_id"]) for item in admin.requests(batch["id"])}
            owner[batch["id"]] = ",".join(sorted(tags))
            if batch.get("cancel_initiated_at"):
                f.canceled_batches.append(batch["id"])

        named: dict[str, list[str]] = defaultdict(list)
        client = self.stack.s3.client()
        for tag in self.tags:
            for job in JOBS:
                where = f"{tag}/{job}"
                ids = set(self._descriptor_batches(tag, job))
                manifest = self._read(client, f"results/{where}/manifest.json")
                if manifest is not None:
                    ids |= set(manifest.get("batch_ids", []))
                    if not manifest.get("complete"):
                        f.incomplete_manifests.append(where)
                for batch_id in sorted(ids):
                    named[batch_id].append(where)
                    if owner.get(batch_id) != tag:
                        f.adopted_across_runs.append(
                            f"{where} named {batch_id} of {owner.get(batch_id, '?')}"
                        )
                self._count_lines(client, tag, job)
        f.batches_named = len(named)
        f.named_twice = sorted(f"{b}: {w}" for b, w in named.items() if len(w) > 1)
        f.orphans = sorted(set(owner) - set(named))
        listing = client.list_objects_v2(Bucket=self.stack.bucket, Prefix="staging/_registry/")
        f.recorded_orphans = sorted(
            item["Key"].rsplit("/", 1)[1].removesuffix(".json")
            for item in listing.get("Contents", [])
            if "/orphans/" in item["Key"]
        )
        f.duplicates = f.batches_created - f.batches_named
        f.requests = self.runs * sum(self.sizes.values())
        f.lost = f.requests - f.own_lines

        blocks = [
            float(m.group(1))
            for name in self.af.triggerer_names
            for m in _BLOCKED.finditer(self.af.component_log(name))
        ]
        f.longest_block = max(blocks, default=0.0)
        f.blocks_over_threshold = len(blocks)

    def _descriptor_batches(self, tag: str, job: str) -> list[str]:
        try:
            value = self.af.xcom(DAG_ID, self.run_ids[tag], f"submit_{job}")
        except LiveAirflowError:
            return []
        if isinstance(value, str):
            value = json.loads(value)
        return [b["id"] for b in (value or {}).get("batches", [])]

    def _read(self, client: Any, key: str) -> Any:
        try:
            body = client.get_object(Bucket=self.stack.bucket, Key=key)["Body"].read()
        except client.exceptions.NoSuchKey:
            return None
        return json.loads(body)

    def _count_lines(self, client: Any, tag: str, job: str) -> None:
        f = self.figures
        mine = expected_ids(tag, job, self.sizes)
        listing = client.list_objects_v2(Bucket=self.stack.bucket, Prefix=f"results/{tag}/{job}/")
        seen: set[str] = set()
        for item in listing.get("Contents", []):
            if not item["Key"].endswith(".jsonl"):
                continue
            body = client.get_object(Bucket=self.stack.bucket, Key=item["Key"])["Body"].read()
            for line in body.splitlines():
                custom_id = json.loads(line)["custom_id"]
                f.result_lines += 1
                if custom_id in mine and custom_id not in seen:
                    seen.add(custom_id)
                else:
                    f.foreign_lines += 1
        f.own_lines += len(seen)

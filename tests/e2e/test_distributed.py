"""The scale test on a distributed Airflow (CeleryExecutor, PostgreSQL, Redis, S3, 2 workers,
2 triggerers): concurrent runs of three jobs each, one worker killed mid-submit, one triggerer
restarted mid-wait. Prints its figures; see docs/deploying.md.

``make test`` runs it with 5 runs; ``make test-scale`` with 20 (AIRFLOW_BATCHES_SCALE_RUNS).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e import hygiene
from tests.e2e.distributed import S3_CONN_ID, distributed_stack
from tests.e2e.scale import ScaleScenario

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAGS = Path(__file__).parent / "scale_dags"
RUNS = int(os.environ.get("AIRFLOW_BATCHES_SCALE_RUNS", "5"))
SIZES = {"inline": 12, "file": 40, "resub": 20}
FILE_SHARD = 16  # the file job: batches of 16, 16 and 8 requests
EMULATOR = {
    "latency": 0.02,
    "workers": 4,
    "seed": 16,
    "responder": "tests.e2e.scale_responder:answer",
}


def test_concurrent_runs_survive_a_lost_worker_and_a_triggerer_restart(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def show(text: str) -> None:
        with capsys.disabled():
            print(text, flush=True)

    env = {
        "SCALE_BUCKET": "airflow-batches",
        "SCALE_S3_CONN": S3_CONN_ID,
        "SCALE_INLINE_REQUESTS": str(SIZES["inline"]),
        "SCALE_RESUB_REQUESTS": str(SIZES["resub"]),
        "SCALE_FILE_SHARD": str(FILE_SHARD),
    }
    show(f"\n[scale] {RUNS} concurrent runs x 3 jobs on the distributed stack")
    with distributed_stack(DAGS, env=env, emulator_config=EMULATOR) as stack:
        af = stack.airflow
        show(f"[scale] stack up in {af.startup_seconds:.0f} s: {', '.join(af.component_names)}")
        scenario = ScaleScenario(stack, runs=RUNS, sizes=SIZES, log=show)
        try:
            figures = scenario.run(timeout=600 + 60 * RUNS)
        finally:
            show(scenario.figures.render())
        key = stack.emulator.api_key
        pg = stack.services.postgres
        found = [
            hygiene.scan_database(pg, key),
            hygiene.scan_triggers(scenario.trigger_snapshot, key),
            hygiene.scan_files(
                [af.home, stack.root, stack.services.root],
                key,
                # The emulator is the API's side (its config holds its keys); the database
                # files are read through pg_dump above.
                exclude=[stack.emulator.root, pg.data_dir],
            ),
            hygiene.scan_s3(stack.s3, key),
        ]
        show("\n".join(f"key hygiene: {f.line()}" for f in found))
        rows = {t: hygiene.table_rows(pg, t) for t in ("xcom", "rendered_task_instance_fields")}
        leftover_af = af

    problems = [
        message
        for ok, message in [
            (bool(figures.killed_in_create), "no submit was inside create when the worker died"),
            (
                sum(v for k, v in figures.retries_by_task.items() if k.startswith("submit_")) > 0,
                "no submit task was retried after the worker was killed",
            ),
            (
                figures.waits_on_restarted > 0
                and figures.waits_moved == figures.waits_on_restarted,
                f"{figures.waits_moved} of the {figures.waits_on_restarted} waits on the"
                " restarted triggerer ran again on a triggerer",
            ),
            (figures.runs_succeeded == RUNS, f"runs not all successful: {figures.run_states}"),
            (
                set(figures.canceled_batches) <= set(figures.orphans),
                f"batches of the runs canceled: {figures.canceled_batches}",
            ),
            (
                not figures.adopted_across_runs,
                f"batches of another run adopted (issue 18): {figures.adopted_across_runs}",
            ),
            (not figures.named_twice, f"batches named by two jobs: {figures.named_twice}"),
            (figures.lost == 0, f"{figures.lost} request(s) without their own result line"),
            (figures.foreign_lines == 0, f"{figures.foreign_lines} line(s) not the job's own"),
            # An extra batch is paid only when a lost create's batch cannot be told apart
            # from another run's (issue 18), and every one is recorded as a possible orphan.
            (
                set(figures.orphans) <= set(figures.recorded_orphans),
                f"batches paid twice or never read, not recorded: {figures.orphans}",
            ),
            (not figures.incomplete_manifests, f"incomplete: {figures.incomplete_manifests}"),
            *[(f.looked > 0 and not f.found, f"API key: {f.line()}") for f in found],
            (all(rows.values()), f"nothing to search in {rows}"),
            (not leftover_af.leftover_processes(), "processes left after the stack stopped"),
        ]
        if not ok
    ]
    assert not problems, "\n".join(problems)

"""``python -m airflow_batches.emulator``: the same as ``airflow-batches emulator``."""

from airflow_batches.emulator.cli import main

raise SystemExit(main())

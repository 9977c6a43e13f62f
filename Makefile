# Two commands for a fresh machine: `make demo` and `make test` (see README.md).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# The older Airflow releases the package supports (docs/compatibility.md). Each gets its own
# virtualenv, .venv-af<release>, with the versions in constraints/airflow-<release>.txt, and runs
# the tests that touch Airflow: the operators, sensor and trigger (every test under these
# folders, so new ones run on every release), the hook and provider, the UI plugin (tests/ui
# and its browser test on the live stack), and the live-stack and
# `airflow dags test` end-to-end tests (deferral included, with a connection stored in the
# metadata DB: test_first_hour). The whole suite, the distributed
# scale test and the fault soak included, runs on the main release (constraints.txt) in .venv.
RELEASES      := 3.1 3.2
RELEASE_TESTS := tests/operators tests/sensors tests/triggers tests/hooks tests/test_provider.py \
	tests/ui tests/e2e/test_live_smoke.py tests/e2e/test_live_batches.py \
	tests/e2e/test_example_dag.py tests/e2e/test_live_restart.py tests/e2e/test_first_hour.py \
	tests/e2e/test_migrating.py tests/e2e/test_live_ui.py tests/e2e/test_live_approval.py

.PHONY: demo test install install-releases lint typecheck pytest pytest-all bench clean \
	services stack test-scale $(RELEASES:%=pytest-af%)

$(STAMP): pyproject.toml setup.cfg constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Rebuilt only when the release's constraints (or the package's requirements) change; kept
# (never deleted as an intermediate file) between runs.
.SECONDARY: $(RELEASES:%=.venv-af%/.installed)
.venv-af%/.installed: constraints/airflow-%.txt pyproject.toml
	test -x .venv-af$*/bin/python || $(PYTHON) -m venv .venv-af$*
	.venv-af$*/bin/python -m pip install --quiet --upgrade pip
	.venv-af$*/bin/python -m pip install --quiet -c constraints/airflow-$*.txt -e '.[test]'
	touch $@

install: $(STAMP)

install-releases: $(RELEASES:%=.venv-af%/.installed)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest

# A static pattern rule: make looks for no implicit rule for a .PHONY target.
$(RELEASES:%=pytest-af%): pytest-af%: .venv-af%/.installed
	.venv-af$*/bin/pytest $(RELEASE_TESTS)

# The main release's whole suite and each older release's subset run side by side (their
# tests mostly wait on Airflow and the emulator; the older releases' virtualenvs are built
# meanwhile when missing); each one's output is shown when it ends.
pytest-all: install
	$(MAKE) --no-print-directory -j$(words pytest $(RELEASES)) --output-sync=target \
		pytest $(RELEASES:%=pytest-af%)

test: lint typecheck pytest-all

demo: install
	$(BIN)/python scripts/demo.py

bench: install
	$(BIN)/python bench/run_all.py

# The distributed stack (docs/deploying.md): PostgreSQL and Redis from Debian's packages,
# installed when missing (needs root), then Airflow with the CeleryExecutor, 2 workers and
# 2 triggerers, S3 (moto) and the emulator, all on 127.0.0.1, until Ctrl-C.
services:
	$(PYTHON) -m scripts.services install

stack: install services
	$(BIN)/python -m tests.e2e.distributed up

# The full scale test: 20 concurrent runs (make test runs it with 5).
SCALE_RUNS ?= 20
test-scale: install services
	AIRFLOW_BATCHES_SCALE_RUNS=$(SCALE_RUNS) $(BIN)/pytest tests/e2e/test_distributed.py -s

clean:
	rm -rf $(VENV) $(RELEASES:%=.venv-af%) .clients-venv .clients-venv.lock .demo .mypy_cache .ruff_cache

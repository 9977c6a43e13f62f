# Two commands for a fresh machine: `make demo` and `make test` (see README.md).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install lint typecheck pytest bench clean services stack test-scale

$(STAMP): pyproject.toml setup.cfg constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest

test: lint typecheck pytest

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
	rm -rf $(VENV) .demo .mypy_cache .ruff_cache

# Two commands matter: `make demo` and `make test` (see README.md); `make check` while you work.
SHELL := /bin/bash
PY ?= python3
# Use uv from PATH when there is one; otherwise bootstrap it into .tools/ from PyPI.
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
export UV_PYTHON_DOWNLOADS := never
# Compile .pyc at install: every `pumphouse` process otherwise recompiles Prefect and pandas (~5 s)
# where PYTHONDONTWRITEBYTECODE is set.
export UV_COMPILE_BYTECODE := 1

.PHONY: demo test check lint typecheck unit clean bench reliability bytecode

.tools/bin/uv:
	$(PY) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PY)
	touch $@

# The project's own modules as an installed package has them: compiled. Where
# PYTHONDONTWRITEBYTECODE is set, each process would otherwise compile them again (~0.07 s).
bytecode: .venv/.synced
	.venv/bin/python -m compileall -q flows tasks schemas tests bench/*.py

demo: .venv/.synced bytecode
	.venv/bin/pumphouse validate pumps/demo.yaml
	.venv/bin/pumphouse run pumps/demo.yaml
	.venv/bin/pumphouse query pumps/demo.yaml "SELECT status, count(*) AS orders, round(sum(amount), 2) AS amount FROM demo GROUP BY status ORDER BY status"

lint: .venv/.synced
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports

typecheck: .venv/.synced
	.venv/bin/mypy

# Tests run on every core (pytest-xdist; WORKERS=0: all in this one process). Each worker
# has its own Prefect server and temporary folders; the tests of a module fixture that must
# not be split stay on one worker (tests/conftest.py ONE_WORKER).
WORKERS ?= logical
XDIST = -n $(WORKERS) --dist loadgroup

unit: .venv/.synced bytecode
	.venv/bin/pytest $(XDIST)

# The whole suite: what CI runs. Lint and type checks run beside the tests, on CPU the tests
# leave idle while they wait for their servers; any of the three failing fails it.
test:
	$(MAKE) --no-print-directory -j 3 lint typecheck unit

# The fast lane for everyday work: lint and the in-process tests, without those that use
# the Prefect server, start a process or soak (markers server, subprocess, slow), with
# Hypothesis at a quarter of its examples (HYPOTHESIS_PROFILE=dev). `make test` before a push.
check: lint bytecode
	HYPOTHESIS_PROFILE=dev .venv/bin/pytest $(XDIST) -m "not server and not subprocess and not slow"

reliability: .venv/.synced
	.venv/bin/python -m tests.reliability

# The bench's own environment (competitors and the chart), apart from the project's.
bench/.venv/.synced: bench/requirements.txt | $(UV)
	$(UV) venv --allow-existing --python $(PY) bench/.venv
	$(UV) pip install --python bench/.venv/bin/python -r bench/requirements.txt
	touch $@

bench: .venv/.synced bench/.venv/.synced bytecode
	bench/.venv/bin/python -m bench $(BENCH_ARGS)

clean:
	rm -rf .venv .tools .pumphouse warehouse .pytest_cache .mypy_cache .ruff_cache
	find flows tasks schemas tests -name __pycache__ -prune -exec rm -rf {} +
	rm -rf bench/__pycache__

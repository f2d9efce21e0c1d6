# Two entry points, both self-contained on a fresh clone:
#   make run   - set up, start the local stage, run a short swarm, write a report
#   make test  - set up (incl. wscat and chromium for end-to-end tests), ruff, mypy, pytest
#   make test-fast - the pure rules only (no stage, no swarm), in well under a minute
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint typecheck pytest bench clean chromium

# Three pytest-xdist workers, a module to a worker (its stages start once). The suite is
# CPU-bound on 2 cores (a real stage, Lambda workers and Locust per swarm), and much of a
# swarm is waiting on the clock: a third worker fills those waits. Measured beside a busy
# core: see the README's development section. PYTEST_WORKERS=0 runs one process.
PYTEST_WORKERS ?= 3
PYTEST_PARALLEL := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)
# Pure rules: no stage, swarm, browser or subprocess.
FAST_TESTS := tests/common tests/bench/test_pure.py tests/stage/test_pure_rules.py \
  tests/stage/test_invoke_rules.py tests/handlers/test_pure.py tests/loadtest/test_clock.py \
  tests/loadtest/test_envelope.py tests/loadtest/test_seats.py tests/loadtest/test_scenario_files.py \
  tests/loadtest/test_distributed.py tests/loadtest/test_live_records.py \
  $(addprefix tests/reports/test_,analysis.py capacity.py compare.py cost.py gate.py saturation.py stats.py)

# Bytecode: site-packages is compiled once at install (uv, in parallel), and fanbench's own
# modules are cached beside their sources (git ignores __pycache__) even where
# PYTHONDONTWRITEBYTECODE is set: every swarm starts several Python processes (stage, Lambda
# environments, Locust), and without bytecode each one compiles its imports again.
# (Compiling site-packages lazily instead, on first import, made the suite's start slower:
# both test workers compiled the same modules at once.)
unexport PYTHONDONTWRITEBYTECODE

# uv installs into the venv pip made (pip stays there for the user): the same
# requirements, resolved and installed in seconds instead of pip's minute.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet 'uv>=0.4'
	$(PY) -m uv pip install --quiet --compile-bytecode --python $(PY) -e '.[dev]'
	touch $(STAMP)

# wscat (an independent client for the end-to-end tests) and dynalite (the local
# stage's DynamoDB emulator; without it the stage falls back to moto).
NODE_STAMP := node_modules/.installed
$(NODE_STAMP): package.json package-lock.json
	npm install --no-audit --no-fund --silent
	touch $@

# Headless Chromium renders the HTML report in the end-to-end report test.
chromium:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

run: $(STAMP) $(NODE_STAMP)
	$(VENV)/bin/fanbench run

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP) $(NODE_STAMP) chromium
	$(PY) -m pytest -q --durations=25 $(PYTEST_PARALLEL)

test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 $(FAST_TESTS)

# ruff and mypy run beside pytest: the suite mostly waits on swarms, so they cost no wall time.
test:
	$(MAKE) --no-print-directory -j3 lint typecheck pytest

bench: $(STAMP) $(NODE_STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) node_modules .mypy_cache .pytest_cache .ruff_cache

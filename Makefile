# Two entry points, both self-contained on a fresh clone:
#   make run   - set up, start the local stage, run a short swarm, write a report
#   make test  - set up (incl. wscat and chromium for end-to-end tests), ruff, mypy, pytest
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench clean chromium

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
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
	$(PY) -m pytest -q

test: lint typecheck pytest

bench: $(STAMP) $(NODE_STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) node_modules .mypy_cache .pytest_cache .ruff_cache

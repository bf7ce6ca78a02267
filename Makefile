# Two commands on a fresh machine: `make study` (set up + run the demo study), `make test`.
# Each creates the virtualenv if it is missing or stale; both are idempotent.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PRESET ?= demo

# Offline and quiet by default: no hub downloads, no telemetry.
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export RAY_USAGE_STATS_ENABLED := 0
export RAY_AUTH_MODE := disabled

.PHONY: setup study test test-slow lint bench lock clean

setup: $(STAMP)

# torch first, pinned to the CPU wheel on disk (anything else pulls a multi-GB CUDA build);
# then the project, constrained by the lock so a fresh clone installs the same versions.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -c requirements.lock -e ".[dev]"
	touch $(STAMP)

study: $(STAMP)
	$(BIN)/flows run sweep --preset $(PRESET)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

# Refresh the lock from the current venv (run after changing dependencies in pyproject.toml).
lock:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e ' > requirements.lock

clean:
	rm -rf $(VENV)

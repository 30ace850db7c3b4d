# The two commands that matter: `make demo` and `make test`. Both create the virtual environment
# from requirements.lock when it is missing or older than the lock.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed-lock
DEMO_DIR ?= demo-output

.PHONY: venv test demo bench lock lint clean

venv: $(INSTALLED) $(VENV)/.installed-project

# A changed lock rebuilds the environment from scratch, so nothing from an old lock lingers.
$(INSTALLED): requirements.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --no-deps -r requirements.lock
	touch $@

$(VENV)/.installed-project: $(INSTALLED) pyproject.toml
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

test: venv
	$(PY) -m pytest -q

demo: venv
	$(PY) -m pipelines.demo --out $(DEMO_DIR)

# Every benchmark in bench/ plus `make demo`, timed per step; writes BENCHMARKS.md (about 15 minutes on
# 2 cores). Not part of `make test` or CI.
bench: venv
	$(PY) -m bench

lint: venv
	$(VENV)/bin/ruff check .

# Re-resolve every dependency to its newest allowed version and rewrite requirements.lock.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet ".[all]"
	.lock-venv/bin/python images/lock.py generate > requirements.lock.new
	mv requirements.lock.new requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .lock-venv .pytest_cache $(DEMO_DIR)

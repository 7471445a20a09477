# Two commands do everything on a fresh machine:
#   make run    set up (virtual environment, torch==2.13.0, parrot) and run the main job
#   make test   set up and run the whole test suite (fast tests, then the slow ones)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.parrot-installed

.PHONY: setup run test test-fast test-slow lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/parrot demo

lint: setup
	$(BIN)/ruff check src tests benchmarks

test-fast: setup
	$(BIN)/pytest -m "not slow" -n 2

test-slow: setup
	$(BIN)/pytest -m slow

test: lint test-fast test-slow

bench: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info

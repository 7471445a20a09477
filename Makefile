# Two commands do everything on a fresh machine:
#   make run    set up (virtual environment, torch==2.13.0, parrot) and run the main job
#   make test   set up and run the whole test suite (fast tests, then the slow ones)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.parrot-runtime
STAMP := $(VENV)/.parrot-installed

.PHONY: setup setup-runtime setup-browser setup-sandbox run test test-fast test-slow lint clean

# `make run` needs only the runtime dependencies; the tests add the reference libraries.
$(RUNTIME): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup-runtime: $(RUNTIME)

setup: $(STAMP)

# Debian's chromium for the chat page's browser test (Playwright drives it; no browser download).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
setup-browser:
	test -x /usr/bin/chromium || ($(SUDO) apt-get update && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y chromium)

# Debian's bubblewrap: model-written code runs only inside it (parrot.tools.sandbox).
setup-sandbox:
	test -x /usr/bin/bwrap || ($(SUDO) apt-get update && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y bubblewrap)

run: setup-runtime
	$(BIN)/parrot demo

lint: setup
	$(BIN)/ruff check src tests benchmarks examples

test-fast: setup
	$(BIN)/pytest -m "not slow" -n 2

test-slow: setup
	$(BIN)/pytest -m slow

test: setup-browser setup-sandbox lint test-fast test-slow


clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info

# tonic: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# pytest-xdist workers: one per core (0: the whole suite in one process).
PYTEST_JOBS ?= auto

.PHONY: setup criu docker browser demo test lint typecheck unit bench clean help

help:
	@echo "make demo   set up, then run the demo notebook (fixtures/demo.js)"
	@echo "make test   set up, then lint, type-check and run the whole test suite"
	@echo "make setup  create .venv with tonic and its development tools, install CRIU"
	@echo "make bench  set up, then measure resume latency, checkpoint/restore and storage"
	@echo "make docker install and start a Docker daemon for the docker engine (test, bench)"
	@echo "make browser install Chromium for the tests of tonic serve's page (test)"
	@echo "make clean  remove .venv and caches"

setup: $(STAMP) criu

# CRIU >= 4 in a private prefix (Debian 12's own 3.17 fails on this kernel); skipped,
# with a message, where it cannot work (not root, not Linux x86_64).
criu:
	@scripts/install-criu

# A Docker daemon for the docker engine: installed (Debian's docker.io) and started with
# tonic's own configuration (experimental, CRIU first on its PATH) when none answers;
# skipped, with a message, where it cannot be (not root). Not part of setup or demo.
docker: criu
	@scripts/install-docker
	@scripts/start-dockerd

# Debian's Chromium for the tests of `tonic serve`'s page (Playwright drives it); skipped,
# with a message, where it cannot be (not root). Not part of setup or demo.
browser:
	@scripts/install-chromium

$(STAMP): pyproject.toml
	@command -v node >/dev/null || { echo "node not found: installing Debian's nodejs"; \
		apt-get update -q && apt-get install -y -q nodejs; }
	@node --version >/dev/null
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: setup
	$(BIN)/tonic run fixtures/demo.js

lint: setup
	$(BIN)/ruff check tonic tests bench
	$(BIN)/ruff format --check tonic tests bench

typecheck: setup
	$(BIN)/mypy

# The kernel's own tests first (node's test runner; the files named, as node >= 21 no
# longer searches a directory argument), then tonic's.
test: lint typecheck docker browser
	node --test tests/kernel/*.test.js
	$(BIN)/python -m pytest -n $(PYTEST_JOBS) $(PYTEST_ARGS)

bench: setup docker
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

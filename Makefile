# tonic: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# pytest-xdist workers: one per core (0: the whole suite in one process).
PYTEST_JOBS ?= auto
# The node matrix: official builds of these versions (scripts/install-nodes pins them),
# each first on PATH for a shorter run of the tests that judge node's own behaviour.
NODES_HOME ?= $(or $(TONIC_NODES_HOME),$(or $(XDG_DATA_HOME),$(HOME)/.local/share)/tonic/node)
NODE_VERSIONS := 22.22.0 24.22.3 26.12.1
EDITS_TESTS := tests/timetravel/test_edits.py
MATRIX_TESTS := tests/engines/test_conformance.py::test_plain_equals_node tests/notebook \
	tests/kernel tests/timetravel/test_continuation.py $(EDITS_TESTS)::test_edit_sequence \
	$(EDITS_TESTS)::test_es_module_edit_sequence \
	$(EDITS_TESTS)::test_files_travel_with_the_snapshots \
	$(EDITS_TESTS)::test_a_file_that_existed_before_the_notebook \
	$(EDITS_TESTS)::test_child_process_and_worker_travel_too
MATRIX_EDITS ?= 4
MATRIX_ESM_EDITS ?= 3
# What the matrix leaves to the system node's run: the docker engine, the warm server and
# the corpus under the replay engine (the criu engine's kernel, without snapshots: 27 s
# of each version's run, with .ci/run near its 30 minutes), and, by MATRIX_TESTS, the
# fault tests and the corpus's --json accounting.
MATRIX_SKIP := not docker and not served and not node[replay

.PHONY: setup criu docker browser nodes demo test test-nodes lint typecheck unit bench clean help

help:
	@echo "make demo   set up, then run the demo notebook (fixtures/demo.js)"
	@echo "make test   set up, then lint, type-check and run the whole test suite"
	@echo "make setup  create .venv with tonic and its development tools, install CRIU"
	@echo "make bench  set up, then measure resume latency, checkpoint/restore and storage"
	@echo "make docker install and start a Docker daemon for the docker engine (test, bench)"
	@echo "make browser install Chromium for the tests of tonic serve's page (test)"
	@echo "make nodes  install the node matrix's pinned node builds (test)"
	@echo "make test-nodes  the node matrix alone: node's tests under each of $(NODE_VERSIONS)"
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

# Official node builds of the matrix's versions, in a private prefix (not on PATH).
nodes:
	@scripts/install-nodes "$(NODES_HOME)"

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
# Then the node matrix: under each pinned version, the kernel's tests, the conformance
# corpus (criu, once), the parser and continuation tests and a shorter edit
# sequence (MATRIX_SKIP: what runs under the system's node only).
test: lint typecheck docker browser nodes
	node --test tests/kernel/*.test.js
	$(BIN)/python -m pytest -n $(PYTEST_JOBS) $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory test-nodes

test-nodes: setup nodes
	@failed=""; for v in $(NODE_VERSIONS); do \
		echo "== the node matrix: node $$v =="; \
		if [ ! -x "$(NODES_HOME)/$$v/bin/node" ]; then \
			echo "node $$v: not installed (make nodes): its part of the matrix skipped"; \
			case ",$$TONIC_REQUIRE_ENGINES," in *,nodes,*) failed="$$failed $$v";; esac; \
			continue; \
		fi; \
		PATH="$(NODES_HOME)/$$v/bin:$$PATH" node --test --test-reporter=dot tests/kernel/*.test.js \
			&& echo "kernel tests under node $$v: passed" || failed="$$failed $$v"; \
		PATH="$(NODES_HOME)/$$v/bin:$$PATH" TONIC_EDITS=$(MATRIX_EDITS) TONIC_ESM_EDITS=$(MATRIX_ESM_EDITS) \
			TONIC_CONFORMANCE_CRIU_RUNS=1 $(BIN)/python -m pytest -q -n $(PYTEST_JOBS) \
			-k "$(MATRIX_SKIP)" $(MATRIX_TESTS) $(PYTEST_ARGS) || failed="$$failed $$v"; \
	done; \
	if [ -n "$$failed" ]; then echo "the node matrix failed under node$$failed"; exit 1; fi

bench: setup docker
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

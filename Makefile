# certctl developer entry points. Every target bootstraps .venv on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install serve test check bench

install: $(STAMP)

# Re-install whenever a lock file or pyproject.toml changes.
$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -r requirements-dev.lock
	$(BIN)/pip install --no-deps -e .
	touch $@

# HTTPS on 127.0.0.1:8443, data in ./data, embedded SQLite (see `certctl serve --help`).
serve: $(STAMP)
	$(BIN)/certctl serve

test: $(STAMP)
	$(BIN)/pytest -n auto

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Load benchmark against Pebble (apt-get install pebble wrk; PostgreSQL on 127.0.0.1:5432
# for the PostgreSQL configuration); writes docs/performance.md. `BENCH_ARGS=--quick` for a
# smoke run of a few minutes; the full run (3 runs) takes about half an hour.
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# Instructions per issuance, newNonce and directory under callgrind (apt-get install
# valgrind), and per issuance on PostgreSQL when CERTCTL_BENCH_POSTGRES_URL is set:
# repeatable on a busy machine, for judging hot-path changes; writes docs/instructions.md.
# A few minutes.
.PHONY: bench-instructions
bench-instructions: $(STAMP)
	$(BIN)/python -m bench.instructions $(BENCH_ARGS)

# ACME client interoperability matrix: every client .ci/run installs, against a served
# certctl in both auth modes; writes docs/interop.md (INTEROP_FLAGS=--quick: CI's subset).
.PHONY: interop
interop: $(STAMP)
	$(BIN)/python -m interop $(INTEROP_FLAGS)

# Mixed-load soak against certctl (SQLite, one worker): issuance, refused requests, OCSP,
# idle and slow connections, with the server's memory sampled from /proc; writes
# docs/soak.md. Ten minutes by default; SOAK_ARGS="--duration 60" for a short run.
.PHONY: soak
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

# Two commands for a new user: `make demo` and `make test`. Everything lives in .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Pinned: a CPU wheel of this version lies on the build machines; an unpinned torch
# would pull a multi-GB CUDA build.
TORCH  := torch==2.13.0

.PHONY: demo test chromium qemu test-postgresql install dev lint bench eval clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet $(TORCH) -e .
	touch $@

$(VENV)/.dev: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet $(TORCH) -e '.[dev]'
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.dev

demo: install
	$(BIN)/moodring demo

test: dev chromium qemu
	$(BIN)/python -m ruff check bot nlp connectors tests
	$(BIN)/python -m ruff format --check bot nlp connectors tests
	$(BIN)/python -m mypy nlp connectors bot
	$(BIN)/python -m pytest

# The dashboard's browser test drives Debian's chromium (Playwright's own browser download
# cannot reach its servers here): installed when missing and we are root, else one line.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] \
	  && apt-get update -qq && apt-get install -y --no-install-recommends chromium >/dev/null; } \
	  || { echo "the browser test needs chromium: sudo apt-get install -y --no-install-recommends chromium"; exit 1; }

# tests/test_int8_cpus.py scores under an emulated CPU without VNNI (qemu-user) to check that
# the int8 scores do not depend on the instruction set: installed when missing and we are root
# on x86_64, else one line (the test then skips; it checks a property, not this machine).
qemu:
	@[ "$$(uname -m)" != x86_64 ] || command -v qemu-x86_64 >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] \
	  && apt-get update -qq && apt-get install -y --no-install-recommends qemu-user >/dev/null; } \
	  || echo "tests/test_int8_cpus.py skips without qemu-user: sudo apt-get install -y qemu-user"

# The whole suite again with every store on PostgreSQL (tests/backend_mode.py): the machine's
# PostgreSQL at 127.0.0.1:5432, or a throwaway one where none answers.
test-postgresql: dev
	MOODRING_TEST_BACKEND=postgresql $(BIN)/python -m pytest

lint: dev
	$(BIN)/python -m ruff check bot nlp connectors tests
	$(BIN)/python -m ruff format --check bot nlp connectors tests
	$(BIN)/python -m mypy nlp connectors bot

eval: install
	$(BIN)/moodring eval ../shared/data/sentiment/val.tsv

bench: install
	$(BIN)/moodring bench

clean:
	rm -rf $(VENV) build/lib *.egg-info moodring.db moodring.db-*

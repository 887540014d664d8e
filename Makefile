# Every target creates .venv on first use; nothing else is needed on a fresh machine.
SHELL       := bash
.SHELLFLAGS := -o pipefail -ec
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv lint test test-fast demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 2>&1 | { grep -v "is ignored" || true; }
	$(BIN)/python -m pip install --quiet -e '.[dev]' 2>&1 | { grep -v "is ignored" || true; }
	$(BIN)/python -c "import hubd.cli.main"
	touch $@

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check hubd cli tests bench
	$(BIN)/ruff format --check hubd cli tests bench
	$(BIN)/mypy

# tests/pg.sh: a throwaway PostgreSQL for the catalog tests (HUBD_TEST_PG=skip to go without).
test: lint
	bash tests/pg.sh $(BIN)/pytest

test-fast: lint
	bash tests/pg.sh $(BIN)/pytest -m "not slow"

demo: $(STAMP)
	bash demo/demo.sh

bench: $(STAMP)
	$(BIN)/python bench/mirror.py
	$(BIN)/python bench/run.py
	$(BIN)/python bench/audit.py
	bash tests/pg.sh $(BIN)/python bench/catalog.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/bundle.py

clean:
	rm -rf $(VENV) .demo .bench .mypy_cache .ruff_cache .pytest_cache

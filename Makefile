# Every target creates .venv on first use; nothing else is needed on a fresh machine.
SHELL       := bash
.SHELLFLAGS := -o pipefail -ec
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv lint test test-fast demo bench schemas clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 2>&1 | { grep -v "is ignored" || true; }
	$(BIN)/python -m pip install --quiet -e '.[dev,llama,postgres,s3]' 2>&1 | { grep -v "is ignored" || true; }
	$(BIN)/python -c "import hubd.cli.main"
	touch $@

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check hubd cli tests bench tools
	$(BIN)/ruff format --check hubd cli tests bench tools
	$(BIN)/mypy
	$(BIN)/python tools/schemas.py --check

# Lint and tests run side by side: a lint nit does not hide the test results; both must pass.
# tests/pg.sh: a throwaway PostgreSQL for the catalog tests (HUBD_TEST_PG=skip to go without).
# tests/s3.sh: a throwaway SeaweedFS S3 server for tests/test_s3*.py (HUBD_TEST_S3=skip to go without).
# tests/olah.sh: Olah 0.5.4 in .venv-olah and git-lfs, for tests/test_olah.py.
# tests/chromium.sh: Debian's Chromium for the browser tests (tests/test_web.py).
test: $(STAMP)
	lint=0; $(MAKE) --no-print-directory lint || lint=$$?; \
	tests=0; bash tests/olah.sh && bash tests/chromium.sh && bash tests/pg.sh bash tests/s3.sh $(BIN)/pytest || tests=$$?; \
	echo "make test: lint exit $$lint, tests exit $$tests"; \
	test $$lint = 0 && test $$tests = 0

test-fast: $(STAMP)
	lint=0; $(MAKE) --no-print-directory lint || lint=$$?; \
	tests=0; bash tests/pg.sh bash tests/s3.sh $(BIN)/pytest -m "not slow" || tests=$$?; \
	echo "make test-fast: lint exit $$lint, tests exit $$tests"; \
	test $$lint = 0 && test $$tests = 0

# schemas/*.json from the pydantic models that own them (lint checks they are current).
schemas: $(STAMP)
	$(BIN)/python tools/schemas.py

demo: $(STAMP)
	bash demo/demo.sh

# Each benchmark adds its figures to bench/results.json; the table of them is printed last.
bench: $(STAMP)
	$(BIN)/python bench/report.py --reset
	$(BIN)/python bench/mirror.py
	$(BIN)/python bench/link.py
	$(BIN)/python bench/run.py
	$(BIN)/python bench/audit.py
	bash tests/pg.sh $(BIN)/python bench/catalog.py
	bash tests/pg.sh $(BIN)/python bench/hub_listing.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/serve_load.py
	$(BIN)/python bench/bundle.py
	$(BIN)/python bench/proxy.py
	bash tests/s3.sh $(BIN)/python bench/s3.py
	$(BIN)/python bench/web.py
	$(BIN)/python bench/upload.py
	$(BIN)/python bench/report.py --table

clean:
	rm -rf $(VENV) .venv-olah .demo .bench .mypy_cache .ruff_cache .pytest_cache

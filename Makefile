# One-command workflows: `make run` renders the bundled example, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
IAC_VENV := .venv-iac
IAC_STAMP := $(IAC_VENV)/.installed
OUT ?= imgpipe-data
ARCH ?= x86_64

.PHONY: run test bench lint typecheck iac-lint package clean install dev serve screenshots browser mariadb
# Browser tests drive Debian's Chromium; installed here when missing (root or sudo).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(STAMP)

install: $(STAMP)
dev: $(DEV_STAMP)

run: $(STAMP)
	$(BIN)/imgpipe run examples/covers.csv --out $(OUT)

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests benchmarks deploy
	$(BIN)/ruff format --check src tests benchmarks deploy

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "install Chromium at $(CHROMIUM) for the browser tests" >&2; exit 1; }
	$(SUDO) apt-get update -q
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium

browser: $(CHROMIUM)

# The SQL source's tests start Debian's MariaDB server (tests/support/mariadb.py);
# installed here when missing. Its service is not started: the tests run their own.
MARIADBD ?= /usr/sbin/mariadbd

$(MARIADBD):
	@command -v apt-get >/dev/null || { echo "install mariadb-server ($(MARIADBD)) for the SQL tests" >&2; exit 1; }
	$(SUDO) apt-get update -q
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q mariadb-server

mariadb: $(MARIADBD)

$(IAC_STAMP): deploy/requirements-iac.txt
	$(PYTHON) -m venv $(IAC_VENV)
	$(IAC_VENV)/bin/pip install --quiet --upgrade pip
	$(IAC_VENV)/bin/pip install --quiet -r deploy/requirements-iac.txt
	touch $@

# cfn-lint checks the SAM template after its transform (circular dependencies
# included); checkov fails on any check neither fixed nor skipped, with a reason,
# in the resource's Metadata.
iac-lint: $(IAC_STAMP)
	$(IAC_VENV)/bin/cfn-lint deploy/template.yaml
	$(IAC_VENV)/bin/checkov -f deploy/template.yaml --framework cloudformation \
	  --skip-download --quiet --compact

# build/lambda/ (the template's CodeUri) and build/imgpipe-lambda.zip; ARCH=arm64 too.
package: | $(BIN)/python
	$(BIN)/python deploy/build_package.py --arch $(ARCH)

# pytest exits 5 when it collected nothing; that must fail, never pass silently.
test: lint typecheck iac-lint browser mariadb
	$(BIN)/python -m pytest; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

serve: $(DEV_STAMP)
	$(BIN)/imgpipe serve --out $(OUT)

# Refresh the dashboard screenshots in docs/ from the browser tests.
screenshots: $(DEV_STAMP) browser
	IMGPIPE_SCREENSHOTS_DIR=docs/screenshots $(BIN)/python -m pytest -q tests/browser

bench: $(DEV_STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(IAC_VENV) $(OUT) build .pytest_cache .mypy_cache .ruff_cache

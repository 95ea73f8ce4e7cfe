# One-command workflows: `make run` renders the bundled example, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
API_STAMP := $(VENV)/.installed-api
IAC_VENV := .venv-iac
IAC_STAMP := $(IAC_VENV)/.installed
OUT ?= imgpipe-data
ARCH ?= x86_64

.PHONY: run test bench bytecode lint typecheck iac-lint package lock clean install dev serve screenshots browser mariadb
# Browser tests drive Debian's Chromium; installed here when missing (root or sudo).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The command with OpenCV's face detector: the default smart crop frames faces with it
# and falls back to saliency alone without it (the Lambda zip, a bare pip install).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[smart]'
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(STAMP) $(API_STAMP)  # [dev] includes [api] and [smart]

# Serving needs the [api] extra (and [smart], for the collages of uploads), not the
# test and lint tools of [dev].
$(API_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[api,smart]'
	touch $@ $(STAMP)

install: $(STAMP)
dev: $(DEV_STAMP)

# An editable install leaves src/ without bytecode, and where PYTHONDONTWRITEBYTECODE
# is set (CI images often set it) every imgpipe process compiled ~120 modules again:
# ~50 ms a start-up, paid by each run, worker and test subprocess. compileall writes
# what is missing or stale whatever that variable says; up to date, it takes ~0.1 s.
bytecode: | $(BIN)/python
	$(BIN)/python -m compileall -q src

run: $(STAMP) bytecode
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
# in the resource's Metadata (SAM) or a #checkov:skip=ID:reason comment (Terraform).
# The Terraform module is proven offline (no provider download): every file parses
# with checkov's HCL parser (bc-python-hcl2, a python-hcl2 fork), checkov's terraform
# checks pass, and `terraform fmt -check` runs when a terraform binary is installed.
TF_DIR := deploy/terraform
iac-lint: $(IAC_STAMP)
	$(IAC_VENV)/bin/cfn-lint deploy/template.yaml
	$(IAC_VENV)/bin/checkov -f deploy/template.yaml --framework cloudformation \
	  --skip-download --quiet --compact
	$(IAC_VENV)/bin/python -c 'import sys, hcl2; [hcl2.load(open(f)) for f in sys.argv[1:]]' \
	  $(wildcard $(TF_DIR)/*.tf)
	$(IAC_VENV)/bin/checkov -d $(TF_DIR) --framework terraform \
	  --skip-download --quiet --compact
	@if command -v terraform >/dev/null; then terraform -chdir=$(TF_DIR) fmt -check -diff; \
	  else echo "terraform not installed: fmt check skipped"; fi

# build/lambda/ (the template's CodeUri) and build/imgpipe-lambda.zip; ARCH=arm64 too.
# Installs exactly deploy/lambda-requirements-$(ARCH).txt (hashes checked).
package: | $(BIN)/python
	$(BIN)/python deploy/build_package.py --arch $(ARCH)

# Re-resolve the Lambda package's locks (both architectures, Python 3.12 on Lambda's
# glibc) from pyproject.toml and deploy/lambda-requirements.in; uv resolves for a
# platform other than this machine's, pip-tools cannot. Commit the result.
LOCK_PLATFORMS := x86_64:x86_64 arm64:aarch64
lock: $(DEV_STAMP)
	for pair in $(LOCK_PLATFORMS); do \
	  $(BIN)/uv pip compile pyproject.toml deploy/lambda-requirements.in \
	    --extra aws --extra api --python-version 3.12 \
	    --python-platform $${pair#*:}-manylinux_2_28 --generate-hashes \
	    --index-url https://pypi.org/simple --custom-compile-command 'make lock' \
	    --quiet -o deploy/lambda-requirements-$${pair%%:*}.txt || exit 1; \
	done

# pytest exits 5 when it collected nothing; that must fail, never pass silently.
test: lint typecheck iac-lint browser mariadb bytecode
	$(BIN)/python -m pytest; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

serve: $(API_STAMP) bytecode
	$(BIN)/imgpipe serve --out $(OUT)

# Refresh the dashboard screenshots in docs/ from the browser tests.
screenshots: $(DEV_STAMP) browser
	IMGPIPE_SCREENSHOTS_DIR=docs/screenshots $(BIN)/python -m pytest -q tests/browser

bench: $(DEV_STAMP) bytecode
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(IAC_VENV) $(OUT) build .pytest_cache .mypy_cache .ruff_cache

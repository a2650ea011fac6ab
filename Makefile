# Two commands on a fresh clone: `make demo` (the main job on real data) and `make test`.
# Each installs what is missing first: a virtualenv in .venv with the pinned packages.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export INSPECTION_HOME ?= $(CURDIR)/var

.PHONY: install browser haproxy test test-fast lint format demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and exactly pinned: pip finds these two on the machine's disk; a looser spec downloads GBs.
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

# The dashboard tests drive Debian's Chromium (Playwright cannot download a browser on these machines).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# The deployment tests check deploy/haproxy/haproxy.cfg with HAProxy's own checker, and the scale-out tests run it.
haproxy:
	@command -v haproxy >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy; }

test: install browser haproxy
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The main job on real data, the whole story: import ELPV, train a short schedule, export, serve, stream the
# held-out cells as two camera lines, QA feedback, and the miss / false-detection rates the server measured.
demo: install
	$(BIN)/inspection demo

bench: install haproxy
	$(PY) -m benchmarks.run

clean:
	rm -rf var reports .pytest_cache .mypy_cache .ruff_cache

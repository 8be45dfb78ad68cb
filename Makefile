# `make demo` and `make test` set up everything they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: setup system-deps demo test lint backfill clean

setup: system-deps $(STAMP)

# Network namespaces give every local job its own localhost: unshare and nsenter (util-linux)
# and ip (iproute2). Installed only when missing, and only where apt-get can run as root.
system-deps:
	@missing=""; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	command -v nsenter >/dev/null || missing="$$missing util-linux"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[local,containers,test]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: setup
	bash scripts/demo.sh

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

# make backfill START=2013-01-01 END=2013-01-07 [RUNS=4] [MAX_JOBS=4]: the daily export over those
# New York days through the real scheduler, triggerer and api-server; see scripts/backfill.py.
RUNS ?= 4
MAX_JOBS ?= 4
backfill: setup
	@if [ -z "$(START)" ] || [ -z "$(END)" ]; then \
		echo "usage: make backfill START=YYYY-MM-DD END=YYYY-MM-DD [RUNS=4] [MAX_JOBS=4]"; exit 2; \
	fi
	bash scripts/backfill.sh $(START) $(END) --max-active-runs $(RUNS) --max-jobs $(MAX_JOBS)

clean:
	rm -rf .airflow .demo

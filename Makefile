# The two commands of the README: `make run` (embedded platform with the demo park) and
# `make test` (the whole suite on the real services). Everything is installed from the
# project's own files: pyproject.toml, package.json and package-lock.json.
SHELL := /bin/bash
PY    ?= python3
VENV  := .venv
BIN   := $(VENV)/bin

.PHONY: run test setup services browser lint compile-check clean-data

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# `npm install` rather than `npm ci`: npm leaves the other platforms' optional anvil binaries
# out of the lock file and `npm ci` then refuses it; versions are pinned exactly either way.
node_modules/.installed: package.json package-lock.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

run: setup
	$(BIN)/parkgrid run

# Browser tests need Debian's Chromium; a test tool's own browser download cannot work here.
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# PostgreSQL, Redis and RabbitMQ run on this machine kind; start any that has stopped.
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 || redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log

lint: setup
	$(BIN)/ruff check .

compile-check: setup
	$(BIN)/python contracts/compile.py --check

test: setup browser services
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -p no:cacheprovider --durations=10 tests

clean-data:
	rm -rf var

# nixify: two commands do all the set-up on a fresh machine (see README.md).
#   make demo   set up, bring the lab up, run the main job on it, summarise
#   make test   set up, run the whole test suite (unit + lab end-to-end)

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
APT_PACKAGES := nix-bin openssh-server age ripgrep git util-linux chromium chromium-driver
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint lab-up lab-down clean

setup: $(STAMP)
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip >/dev/null
	$(VENV)/bin/pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/nixify demo

test: setup
	$(VENV)/bin/python -m pytest -q tests

lint: setup
	$(VENV)/bin/ruff check nixify operations tests deploy.py rollback.py status.py inventories bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

lab-up: setup
	$(VENV)/bin/nixify lab up

lab-down: setup
	$(VENV)/bin/nixify lab down

clean:
	-$(VENV)/bin/nixify lab down
	rm -rf $(VENV) reports

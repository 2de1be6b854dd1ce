# Two commands on a fresh Debian/Ubuntu machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# MicroPython stubs for pyright (make typecheck-firmware), pinned with their stdlib dependency.
RP2_STUBS_VERSION := 1.29.0.post1
STDLIB_STUBS_VERSION := 1.29.0.post2
STUBS := .stubs/rp2
STUBS_STAMP := $(STUBS)/.installed-$(RP2_STUBS_VERSION)-$(STDLIB_STUBS_VERSION)

.PHONY: setup demo test lint typecheck typecheck-firmware unit bench clean mosquitto

setup: $(STAMP) node_modules/.installed $(STUBS_STAMP) mosquitto

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The stubs shadow stdlib modules (time, sys, select, hashlib ...) with MicroPython's, so they
# stay out of .venv: they go where pyrightconfig.json expects a venv's site-packages.
$(STUBS_STAMP): | $(STAMP)
	rm -rf $(STUBS)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-compile \
	  --target $(STUBS)/lib/site-packages \
	  micropython-rp2-rpi-pico-stubs==$(RP2_STUBS_VERSION) \
	  micropython-stdlib-stubs==$(STDLIB_STUBS_VERSION)
	touch $@

# Mosquitto is installed through apt-get when it is missing (tests start their own instance).
mosquitto:
	@command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || { \
	  echo "installing mosquitto through apt-get"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null; }

demo: setup
	$(VENV)/bin/amtomat demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Board code (protocol/, firmware_micropython/) against the MicroPython rp2 stubs.
typecheck-firmware: $(STUBS_STAMP) node_modules/.installed
	node_modules/.bin/pyright --project pyrightconfig.json

unit: setup
	$(VENV)/bin/pytest -q

test: setup lint typecheck typecheck-firmware unit

bench: setup
	$(PY) bench/protocol_host.py
	$(PY) bench/protocol_micropython.py
	$(PY) bench/firmware_micropython.py
	$(PY) bench/terminal.py
	$(PY) bench/fleet.py
	$(PY) bench/flash.py

clean:
	rm -rf $(VENV) node_modules .stubs .pytest_cache .mypy_cache .ruff_cache .hypothesis

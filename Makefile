# Every target sets itself up on a fresh machine: the first one run creates .venv and
# installs zart-nb with its test extras; it is redone only when pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium

.PHONY: $(VENV) test lint demo lab chaos bench browser-deps

$(VENV): $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# The browser tests drive Debian's chromium through Playwright (never a downloaded build).
browser-deps:
	@if [ -x $(CHROMIUM) ]; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	else \
		echo "browser-deps: $(CHROMIUM) is missing and apt-get needs root; browser tests will be skipped"; \
	fi

# Lint (ruff) and types (mypy, strict on zart_nb/), as configured in pyproject.toml.
lint: $(INSTALLED)
	$(PY) -m ruff check .
	$(PY) -m mypy

# The checks, then the whole suite but the long fault-injection runs (those are `make chaos`).
test: $(INSTALLED) browser-deps lint
	$(PY) -m pytest tests/ -m 'not slow'

# pytest exits 5 when no test is marked slow yet: that is not a failure.
chaos: $(INSTALLED)
	$(PY) -m pytest tests/ -m slow || [ $$? -eq 5 ]

demo: $(INSTALLED)
	$(PY) -m zart_nb.demo

# Jupyter refuses to run as root unless told to (containers, this project's machines).
lab: $(INSTALLED)
	$(VENV)/bin/jupyter lab notebooks/ --ip 127.0.0.1 $$([ "$$(id -u)" = 0 ] && echo --allow-root)

bench: $(INSTALLED)
	$(PY) -m benchmarks

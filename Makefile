# kdk: `make demo` and `make test` install what is missing first.
VENV   := .venv
BIN    := $(VENV)/bin
KDK    := $(BIN)/kdk
PYTHON := /usr/bin/python3

.PHONY: deps demo test lint bench clean

# System packages (checked every time, cheap), then the venv. The venv sees
# the system's site-packages so that Debian's bcc (python3-bpfcc) imports.
deps:
	@scripts/install-deps
	@$(MAKE) --no-print-directory $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

demo: deps
	$(KDK) up
	$(KDK) load hello; rc=$$?; $(KDK) down; exit $$rc

lint: deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: deps
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/python scripts/bench.py

clean:
	rm -rf .kdk $(VENV)
	for d in kmods/* drivers/*; do $(MAKE) -s -C $$d clean KDIR=$$(ls -d /lib/modules/*/build | tail -1) >/dev/null 2>&1 || true; done

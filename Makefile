# kdk: `make demo` and `make test` install what is missing first.
VENV   := .venv
BIN    := $(VENV)/bin
KDK    := $(BIN)/kdk
PYTHON := /usr/bin/python3

.PHONY: deps demo check test lint bench clean

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
	$(BIN)/lint-imports --no-cache

# Lint and the tests that need neither a VM, a kernel build nor a chroot: seconds.
check: lint
	$(BIN)/pytest -rs -m "not vm and not kbuild and not chroot"

# The module, driver and lab tests run a second time, on the other kernel
# scripts/install-deps installs (Linux 6.12 on Debian 12), in a VM of its
# own; where that kernel is not installed they skip and say why (and fail
# under CI=true: see kdk_expected_skips in pyproject.toml). gdb's
# tests too: its module symbols once went wrong on 6.12 alone.
MATRIX_KERNEL ?= 6.12
MATRIX_PATHS  := $(wildcard kmods drivers rawnet) tests/test_gdb.py

# The debug kernel tests/test_kbuild_vm.py boots is built first, with its
# progress line, into ~/.cache/kdk/kernels (kept: the next run reuses it).
# Each pass shares its test files out over TEST_VMS and MATRIX_VMS VMs
# (pytest-xdist, a file's tests in one VM, each VM its own state folder, the
# host's cores shared out among them: kdk.testing's guest_cpus, one CPU each
# on 2 cores). Under TCG, VMs whose CPUs outnumber the cores slow each other
# down: two VMs of 2 CPUs gave nothing over one. A clean-clone CI run on 2
# cores: the first pass 9:55 in two VMs against 16:51-19:44 in one, the
# second 2:52 against 4:43-5:31 (scripts/bench-notes.md).
TEST_VMS ?= 2
MATRIX_VMS ?= 2
test: lint
	@scripts/install-vagrant  # the Vagrant backend's tests (tests/test_vagrant.py)
	$(KDK) kernel build --debug; rc=$$?; \
	$(BIN)/pytest -rs $(if $(filter-out 1,$(TEST_VMS)),-n $(TEST_VMS) --dist loadfile) || rc=1; \
	KDK_KERNEL=$(MATRIX_KERNEL) $(BIN)/pytest -rs $(if $(filter-out 1,$(MATRIX_VMS)),-n $(MATRIX_VMS) --dist loadfile) $(MATRIX_PATHS) || rc=1; exit $$rc

bench: deps
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/python scripts/bench.py $(BENCH_FLAGS)

clean:
	rm -rf .kdk $(VENV)
	for d in kmods/* drivers/*; do $(MAKE) -s -C $$d clean KDIR=$$(ls -d /lib/modules/*/build | tail -1) >/dev/null 2>&1 || true; done

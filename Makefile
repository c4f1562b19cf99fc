# minibus.pki developer entry points. Everything runs from the project's own venv (.venv),
# built from requirements-dev.txt with the system python3 (Debian 12: python3.11).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= /usr/bin/python3
VENV := $(CURDIR)/.venv
STAMP := $(VENV)/.requirements.stamp
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_NOCOLOR := 1

# The collection has to live under ansible_collections/<namespace>/<name> for ansible-test.
COLL_DIR := $(CURDIR)/build/ansible_collections/minibus/pki

.PHONY: venv test test-unit test-bootstrap sanity lint test-integration test-molecule \
	demo bench collection-copy clean

venv: $(STAMP)

$(STAMP): requirements-dev.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

test: test-unit test-bootstrap sanity lint test-integration test-molecule

test-unit: $(STAMP)
	python -m pytest -q tests/unit bench/test_fleet_sim.py

test-bootstrap: $(STAMP)
	tests/vault/test_bootstrap.sh

# Copy of the collection where ansible-test (and anything needing the FQCN) can find it.
# ansible-test lists files with git, and build/ is inside this (git-ignored) tree: the copy
# gets a repository of its own (git init, nothing committed: untracked files count).
RSYNC_EXCLUDES := .venv build .git .ansible tests/output __pycache__ .pytest_cache .cache
collection-copy:
	mkdir -p $(COLL_DIR)
	rsync -a --delete $(foreach e,$(RSYNC_EXCLUDES),--exclude $(e)) ./ $(COLL_DIR)/
	test -d $(COLL_DIR)/.git || git -C $(COLL_DIR) init -q

# ansible-test sanity without docker: --local runs in the current environment (.venv).
# Even with --local, ansible-test gives each sanity test its own venv under ~/.ansible/test/venv
# and bootstraps pip there with get-pip.py downloaded from ci-files.testing.ansible.com, which
# is NOT reachable here (only PyPI is). We seed ansible-test's cache with a stand-in
# (ensurepip, then pip install the pins it is asked for); the per-test requirements
# (sanity.*.txt, exact pins) then come from PyPI. First run about 1 min, later runs reuse the
# venvs. --requirements is not needed (and would reinstall into .venv).
# --python 3.11: the one interpreter we have; other versions would only be skipped.
define GET_PIP_STANDIN
# Offline stand-in for get-pip.py, written by minibus.pki's Makefile: ansible-test downloads
# the real one from ci-files.testing.ansible.com, unreachable here. Installs the pip bundled
# with the interpreter (ensurepip), then lets it install the requested pins from the index.
import ensurepip
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--upgrade", *args]))
endef
export GET_PIP_STANDIN
ANSIBLE_TEST_CACHE := $(HOME)/.ansible/test/cache
SANITY_SKIP ?=
sanity: $(STAMP) collection-copy
	pipv=$$(sed -n "s/^ *pip='\([0-9.]*\)',.*/\1/p" \
		$$(python -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')/_internal/python_requirements.py); \
	f=$(ANSIBLE_TEST_CACHE)/get_pip_$${pipv//./_}.py; \
	if [ -n "$$pipv" ] && [ ! -s "$$f" ]; then mkdir -p $(ANSIBLE_TEST_CACHE); printf '%s\n' "$$GET_PIP_STANDIN" >"$$f"; fi
	cd $(COLL_DIR) && ansible-test sanity --local --python 3.11 --color no \
		$(foreach t,$(SANITY_SKIP),--skip-test $(t))

lint: $(STAMP)
	ansible-lint --profile production --nocolor

# ansible-test integration targets against a real OpenBao dev server that the script starts,
# configures with playbooks/vault_bootstrap.yml and stops again.
test-integration: $(STAMP) collection-copy
	tests/integration/run.sh $(COLL_DIR)

# filled by issue work
test-molecule: $(STAMP)
	@true

demo:
	@echo "demo: not yet implemented" >&2; exit 1

# P1-P4 (see bench/run_bench.py): timings as ratios measured in one run on this machine, written to
# bench/results/bench-<date>.md. Targets are reported, never asserted.
bench: $(STAMP)
	python bench/run_bench.py

clean:
	rm -rf build tests/output

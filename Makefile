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

.PHONY: venv os-packages test test-unit test-monitoring test-bootstrap sanity sanity-matrix lint docs-lint test-examples test-platform test-integration test-reliability test-soak test-molecule \
	demo demo-clean dist test-dist test-awx bench collection-copy clean

venv: $(STAMP)

$(STAMP): requirements-dev.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

# The Debian packages the tests need (tools/packages.txt), installed first when missing (as root;
# otherwise one sentence saying what to install): no test is skipped for a missing package.
os-packages:
	tools/os-packages.sh test

# The short soak (about 10 minutes of mostly waiting for 5-minute certificates) runs in the
# background beside the first steps, which need no timing: its output goes to build/test-soak.log
# and is printed, with its result, once the other steps are done. Either failing fails `make test`.
TEST_STEPS := test-unit test-monitoring test-bootstrap sanity sanity-matrix lint docs-lint test-examples test-platform test-integration test-reliability test-dist test-molecule test-awx
test: os-packages $(STAMP)
	mkdir -p build
	@echo "==> test-soak started in the background (build/test-soak.log)"
	$(MAKE) --no-print-directory test-soak > build/test-soak.log 2>&1 & soak=$$!; \
	steps=0; $(MAKE) --no-print-directory $(TEST_STEPS) || steps=$$?; \
	soak_status=0; wait $$soak || soak_status=$$?; \
	echo "==> test-soak (build/test-soak.log, exit $$soak_status)"; cat build/test-soak.log; \
	if [ $$soak_status -ne 0 ]; then echo "make: *** [test-soak] Error $$soak_status"; fi; \
	test $$steps -eq 0 -a $$soak_status -eq 0

test-unit: $(STAMP)
	python -m pytest -q tests/unit bench/test_fleet_sim.py

# The shipped Prometheus alert rules (promtool from Debian's prometheus package): syntax, the rule
# unit tests (each alert fires and does not fire), and the renderer's textfile through
# `promtool check metrics` for every state.
RULES := roles/minibus_certs/files/prometheus/minibus_certs_rules.yml
test-monitoring: $(STAMP)
	@command -v promtool >/dev/null || { echo "test-monitoring needs promtool (Debian package prometheus): tools/os-packages.sh test" >&2; exit 1; }
	promtool check rules $(RULES)
	promtool test rules tests/monitoring/*.test.yml
	python -m pytest -q tests/monitoring

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

# ansible-test sanity without docker (--local, the current environment): tools/sanity.sh seeds
# ansible-test's pip bootstrap offline. First run about 1 min, later runs reuse its venvs.
SANITY_SKIP ?=
SANITY_ARGS = $(foreach t,$(SANITY_SKIP),--skip-test $(t))
sanity: $(STAMP) collection-copy
	tools/sanity.sh $(COLL_DIR) $(SANITY_ARGS)

# The rest of the tested ansible-core range (requirements-dev.txt, `# sanity-matrix:` lines; the
# lowest is meta/runtime.yml's requires_ansible): ansible-test sanity with each, from its own
# venv build/venv-ansible-core-<version> (made once, about 20 s each).
SANITY_MATRIX := $(shell sed -n 's/^\# sanity-matrix: *ansible-core==//p' requirements-dev.txt)
sanity-matrix: collection-copy
	for v in $(SANITY_MATRIX); do \
		venv=$(CURDIR)/build/venv-ansible-core-$$v; \
		test -x $$venv/bin/ansible-test || { rm -rf $$venv; $(PYTHON) -m venv $$venv; \
			$$venv/bin/pip install -q ansible-core==$$v; }; \
		echo "==> ansible-test sanity with ansible-core $$v"; \
		PATH=$$venv/bin:$$PATH tools/sanity.sh $(COLL_DIR) $(SANITY_ARGS); \
	done

lint: $(STAMP)
	ansible-lint --profile production --nocolor

# The plugin and role documentation as antsibull-docs (the tool that builds Ansible's docsite) reads
# it: markup, references (R() for roles, M() for modules), seealso, attributes, fragments.
docs-lint: $(STAMP) collection-copy
	cd $(COLL_DIR) && antsibull-docs lint-collection-docs --plugin-docs .

# Every yaml block of README.md, roles/minibus_certs/README.md, roles/vault_pki/README.md and awx/README.md as pasted, against
# a dev OpenBao and the collection installed from its tarball (only the Vault address, the CA file,
# the certificate directory and the domain substituted: the rule in labs/readme.py). Then the fleet
# example (README.md's inventory and playbook, the role README's playbook) whole on systemd hosts in
# podman (tests/examples/test_fleet_on_hosts.sh, heavy, about 5 minutes).
test-examples: $(STAMP) dist
	python -m pytest -q tests/examples
	tests/examples/test_fleet_on_hosts.sh $(TARBALL)

# ansible-test integration targets against a real OpenBao dev server that the script starts,
# configures with playbooks/vault_bootstrap.yml and stops again.
test-integration: $(STAMP) collection-copy
	tests/integration/run.sh $(COLL_DIR)

# The minibus_certs Ansible role's per-OS layer and package step on each image, offline
# (tests/platform/test_platform.sh; podman, about 1 min).
test-platform: $(STAMP)
	export CONTAINERS_CONF=$(CURDIR)/tools/podman/containers.conf; \
	tools/podman/build-image.sh bookworm && tools/podman/build-image.sh trixie && tests/platform/test_platform.sh

# Molecule scenario molecule/default: OpenBao, an rsyslog server and two clients in systemd
# containers (rootful podman, locally built Debian 12 image; see tools/molecule.sh).
test-molecule: $(STAMP)
	tools/molecule.sh

# Crash safety (kill -9 at 50+ points), Vault outage/sealed, replay, secret leak scan, TLS bad inputs
# (wrong CA, name mismatch, expired certificate): real OpenBao over HTTPS from labs/vault.py.
test-reliability: $(STAMP)
	python -m pytest -q tests/reliability

# The fleet soak, short (labs/soak.py with every fault once, about 10 minutes on 2 cores; root): every
# fault kind at least once, each line counted from syslog(3) on a client to the log server's file.
# The 60-minute soak is P6 of `make bench`.
test-soak: $(STAMP)
	python -m pytest -q -s tests/soak

# The collection as users get it: dist/minibus-pki-<version>.tar.gz (galaxy.yml build_ignore
# keeps .venv, build, dist, tests/output, bench/results out of it).
VERSION := $(shell sed -n 's/^version: *//p' galaxy.yml)
TARBALL := $(CURDIR)/dist/minibus-pki-$(VERSION).tar.gz
# Older tarballs are removed: execution-environment.yml installs dist/minibus-pki-*.tar.gz.
dist: $(STAMP)
	rm -f dist/minibus-pki-*.tar.gz
	ansible-galaxy collection build --force --output-path dist/ .
	@ls -l $(TARBALL)

# Install the tarball offline into an empty collections path and smoke-test the installed copy
# (plugin docs, vault_bootstrap against a dev server, lookup + vault_pki_issue).
test-dist: $(STAMP) dist
	tests/dist/test_tarball.sh $(TARBALL)

# site.yml through ansible-runner the way AWX runs it: env injected from awx/credential_type.yml,
# collection from the tarball, a real OpenBao + rsyslog server + client lab (podman).
test-awx: $(STAMP) dist
	tests/awx/test_builder.sh
	tests/awx/test_runner.sh $(TARBALL)

# A newcomer's tour on a fresh Debian 12: lab (OpenBao, rsyslog server and client in podman),
# bootstrap, site.yml through ansible-runner from the built tarball, certificates and the
# proof that a log line crosses mutual TLS. `make demo-clean` removes it again
# (DEMO_CLEAN_IMAGE=1 also removes the image).
demo:
	tools/demo.sh

demo-clean:
	tools/demo.sh clean

# P1-P6 (see bench/run_bench.py; P6 is the fleet soak, labs/soak.py, 60 minutes, root): timings as ratios measured in one run on this machine, written to
# bench/results/bench-<date>.md. P7 (bench/role_fleet.sh, podman, root, about 5 min): the whole role on six
# container hosts, written to bench/results/role-fleet-<date>.md. Targets are reported, never asserted.
bench: $(STAMP) dist
	python -m bench.run_bench
	bench/role_fleet.sh $(TARBALL)

clean:
	rm -rf build tests/output

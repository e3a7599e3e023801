#!/usr/bin/env bash
# Installs what building, running and testing AutoCache needs on a fresh Debian machine.
# Idempotent: does nothing when everything is already there.
set -euo pipefail

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-pip)
command -v c++ >/dev/null 2>&1 || need_apt+=(build-essential)
# The bundled RocksDB (raft log store) is compiled from C++ and its bindings need libclang.
dpkg -s libclang-dev >/dev/null 2>&1 || need_apt+=(libclang-dev)
# The correctness harness (jepsen/) puts nodes in network namespaces (iproute2) and injects
# faults with iptables and libfaketime.
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
dpkg -s libfaketime >/dev/null 2>&1 || need_apt+=(libfaketime faketime)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# redis-py 5+ speaks RESP3; the client-library tests use it.
if ! python3 -c 'import redis, sys; sys.exit(0 if int(redis.__version__.split(".")[0]) >= 5 else 1)' 2>/dev/null; then
  echo "setup: installing redis-py" >&2
  python3 -m pip install --quiet --disable-pip-version-check 'redis>=5' 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'redis>=5'
fi

command -v cargo >/dev/null 2>&1 || { echo "setup: cargo (Rust) is required: https://rustup.rs" >&2; exit 1; }

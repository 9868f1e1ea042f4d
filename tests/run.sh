#!/usr/bin/env bash
# Install what the tests need on a fresh Debian machine and run the whole suite, as root.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
if ! dpkg -s busybox-static runc crun iproute2 libseccomp2 gcc libc6-dev podman containerd \
        >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq busybox-static runc crun iproute2 libseccomp2 gcc libc6-dev \
        podman containerd >/dev/null
fi
python3 -m pip install -q --root-user-action=ignore -e '.[test]'
ruff check runtime tests
python3 -m pytest -q -ra tests "$@"

#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain: Debian's kcat and the Python Kafka
# clients (ci/tests/requirements.txt) into the machine's python3. Idempotent and quiet: a
# second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v kcat >/dev/null && ! command -v kafkacat >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    # Debian names the package kcat since bookworm, kafkacat before.
    as_root apt-get install -y -qq kcat >/dev/null ||
        as_root apt-get install -y -qq kafkacat >/dev/null
fi

# With exact pins, pip answers from the installed set without downloading when satisfied.
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    -r ci/tests/requirements.txt

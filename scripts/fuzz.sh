#!/usr/bin/env bash
# Build the libFuzzer targets in fuzz/ with clang (AddressSanitizer and
# UndefinedBehaviorSanitizer on the library too) and run each for SECONDS,
# starting from the seed corpus in fuzz/corpus/. New inputs go to a scratch
# corpus under the build folder; the seeds are not modified. Exits non-zero
# when a fuzzer finds a crash (its input is saved in the build folder).
#
#   scripts/fuzz.sh 30          # CI's short pass
#   scripts/fuzz.sh 300         # a longer run
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
build=${QUANTA_FUZZ_BUILD:-build-fuzz}
cc=${CLANG:-clang}
flags="-g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined"

cmake -S . -B "$build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=Debug -DQUANTA_BUILD_TESTS=OFF \
      -DCMAKE_C_FLAGS="$flags -fsanitize=fuzzer-no-link" >/dev/null
cmake --build "$build" --target quanta_static -j "$(nproc)" >/dev/null

status=0
for src in fuzz/fuzz_*.c; do
  name=$(basename "$src" .c)
  kind=${name#fuzz_}
  "$cc" $flags -fsanitize=fuzzer -Iinclude "$src" "$build/libquanta.a" -lm -ldl -lpthread -o "$build/$name"
  work="$build/corpus-$kind"
  mkdir -p "$work" "$build/crashes-$kind"
  echo "fuzz: $name for ${seconds}s"
  if ! "$build/$name" "$work" "fuzz/corpus/$kind" -max_total_time="$seconds" -max_len=65536 \
        -rss_limit_mb=2048 -artifact_prefix="$build/crashes-$kind/" -print_final_stats=1 2>"$build/$name.log"; then
    echo "fuzz: $name FAILED; see $build/$name.log and $build/crashes-$kind/"
    tail -n 40 "$build/$name.log"
    status=1
  else
    grep -E "stat::number_of_executed_units|stat::new_units_added" "$build/$name.log" | sed "s/^/fuzz: $name: /"
    echo "fuzz: $name: corpus $(ls "$work" | wc -l) inputs, no crash"
  fi
done
exit $status

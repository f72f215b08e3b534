# Convenience targets over CMake. `make` builds the library and the tool;
# `make check` installs what the tests need, then runs the whole suite, again
# under AddressSanitizer and UndefinedBehaviorSanitizer (CPU backend), and a
# short libFuzzer pass over the file parsers;
# `make gpu-check` runs the suite on the CUDA backend and under
# compute-sanitizer's memcheck (on a machine with a GPU).
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CTEST = ctest --output-on-failure --no-tests=error -j$(JOBS)

.PHONY: all deps check check-asan gpu-check gpu-test gpu-memcheck install clean

all:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

deps:
	@scripts/install-deps.sh

check: deps all
	cd $(BUILD) && $(CTEST)
	$(MAKE) check-asan
	scripts/fuzz.sh 30

# The C tests under the sanitizers; the Python tests load libquanta.so into
# a Python that was not built with ASan, so they run in the normal build only.
check-asan:
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DQUANTA_SANITIZE=ON \
		-DQUANTA_TEST_CACHE_DIR=$(abspath $(BUILD))/kernel-cache >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && QUANTA_BACKEND=cpu ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1 \
		UBSAN_OPTIONS=print_stacktrace=1 $(CTEST) -E _py

gpu-check: gpu-test gpu-memcheck

gpu-test: all
	cd $(BUILD) && QUANTA_BACKEND=cuda $(CTEST)

# Each C test program once more under memcheck (the Python tests drive the
# CLI, which the C tests already cover). API errors are not reported: the
# tests make failing driver calls on purpose (an allocation that cannot fit,
# a launch with too many threads) to check the errors quanta returns.
gpu-memcheck: all
	@set -e; for t in $(BUILD)/tests/test_*; do \
		[ -f "$$t" ] && [ -x "$$t" ] || continue; \
		echo "compute-sanitizer memcheck: $$t"; \
		QUANTA_BACKEND=cuda QUANTA_CACHE_DIR=$(abspath $(BUILD))/kernel-cache \
			compute-sanitizer --tool memcheck --require-cuda-init no --report-api-errors no --error-exitcode 1 --leak-check full $$t >$$t.memcheck.log 2>&1 \
			|| { tail -40 $$t.memcheck.log; exit 1; }; \
		grep -h "ERROR SUMMARY" $$t.memcheck.log || echo "(no CUDA calls)"; \
	done

install: all
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

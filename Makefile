# Thin wrapper over CMake. `make tune` and `make test` are the two commands
# README starts with; both install what they need first.
SHELL := /bin/bash
JOBS ?= $(shell nproc)
RELEASE := build/release
NEON := build/neon
ASAN := build/asan
TSAN := build/tsan
INSTALL := build/install
# Seconds each libFuzzer harness runs in `make test-fuzz` (CI: 6).
FUZZ_SECONDS ?= 4

.PHONY: deps deps-build build tune test static-tools test-x86 test-neon test-asan test-tsan test-fuzz test-valgrind test-consumer test-python-install bench clean

deps:
	@scripts/install-deps.sh test

deps-build:
	@scripts/install-deps.sh build

build: deps-build
	cmake -S . -B $(RELEASE) -G Ninja -DCMAKE_BUILD_TYPE=Release
	cmake --build $(RELEASE) -j $(JOBS)

# The main job: the autotuner on the built-in default workload (heads 8, N 4096,
# head_dim 128, 64 steps), merging into the per-user profile
# (~/.config/spattn/<machine-id>.yaml unless SPATTN_PROFILE / XDG_CONFIG_HOME
# say otherwise), ending with the table against the dense baselines.
# TUNE_FLAGS passes more flags.
tune: build
	$(RELEASE)/tuner/spattn-tune $(TUNE_FLAGS)

bench: build
	$(RELEASE)/bench/spattn-bench --benchmark_counters_tabular=true

# Everything CI runs; the fuzzers and the soak are bounded in time
# (FUZZ_SECONDS each, SPATTN_SOAK_STEPS) so the whole stays under CI's 30
# minutes on 2 cores. test-python-install is README's pip steps verbatim (a
# second full build of the library, about 75 s) and the pytest suite against
# the installed module. Not in `make test`: test-valgrind (the same ISAs run
# under ASan).
test: deps test-x86 test-neon test-asan test-tsan test-fuzz test-consumer test-python-install
	@echo "make test: x86 (every ISA here, the Python suite included), NEON under qemu, ASan+UBSan, TSan, fuzzers, the consumer projects and the pip install all passed"

test-x86: build
	cd $(RELEASE) && ctest --output-on-failure -j $(JOBS)

# NEON: the kernel suite only (the per-ISA suites on neon and neon_bf16, the
# dispatch and error tests), in two gtest shards side by side under qemu. The
# pattern, session, tuner and soak suites are ISA-independent C++ that runs
# natively, under ASan and under TSan; building and running them for aarch64
# cost CI about two minutes. The scalar instances are the same C++ as on x86.
test-neon: deps
	cmake -S . -B $(NEON) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -DCMAKE_TOOLCHAIN_FILE=$(CURDIR)/cmake/toolchain-aarch64.cmake \
	  -DSPATTN_WITH_BLAS=OFF -DSPATTN_WITH_YAML=OFF -DSPATTN_WITH_NUMA=OFF \
	  -DSPATTN_BUILD_BENCH=OFF -DSPATTN_BUILD_TOOLS=OFF -DSPATTN_GTEST_FROM_SOURCE=ON
	cmake --build $(NEON) -j $(JOBS) --target spattn_kernel_tests
	cd $(NEON) && run="qemu-aarch64 -L /usr/aarch64-linux-gnu tests/spattn_kernel_tests --gtest_filter=-*/scalar --gtest_brief=1"; \
	  GTEST_TOTAL_SHARDS=2 GTEST_SHARD_INDEX=0 $$run > neon-shard0.log 2>&1 & p0=$$!; \
	  GTEST_TOTAL_SHARDS=2 GTEST_SHARD_INDEX=1 $$run > neon-shard1.log 2>&1 & p1=$$!; \
	  ok=1; wait $$p0 || ok=0; wait $$p1 || ok=0; tail -n 2 neon-shard0.log neon-shard1.log; \
	  if [ $$ok = 0 ]; then cat neon-shard0.log neon-shard1.log; echo "test-neon: failed"; exit 1; fi

# ASan+UBSan ctest, one pass, with SPATTN_ISA forced to the first of avx512,
# avx2, scalar this CPU runs. The per-ISA instances (test names ending in
# /<isa>) set their ISA themselves, so every ISA's kernels run under ASan in
# that one pass, except avx2's instances, left out for CI time (the same
# generic kernels as avx512's at 8 lanes; test-valgrind runs them); the suites that do not pick their ISA (patterns, session,
# soak, tuner) run on the forced one. A second pass on scalar repeated only
# those suites (over 2 minutes of CI) and was dropped to keep `make test`
# within CI's 20 minutes when the Python install test arrived. An ISA the CPU
# lacks is skipped: the probe is one dispatch test, which fails with the
# library's own "SPATTN_ISA=...: this CPU or build does not support that
# ISA". -O1 (asserts stay on), as ASan's docs advise: the -O0 kernels made the
# pass too slow for `make test`.
ASAN_ENV := ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp
test-asan: deps
	cmake -S . -B $(ASAN) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSPATTN_SANITIZE=ON \
	  -DCMAKE_CXX_FLAGS_DEBUG="-g -O1" -DCMAKE_C_FLAGS_DEBUG="-g -O1" -DSPATTN_BUILD_BENCH=OFF
	cmake --build $(ASAN) -j $(JOBS)
	@cd $(ASAN) && for isa in avx512 avx2 scalar; do \
	  if ! SPATTN_ISA=$$isa $(ASAN_ENV) tests/spattn_kernel_tests \
	      --gtest_filter=Dispatch.ForcingAnUnsupportedIsaIsAnErrorNotACrash >/dev/null 2>&1; then \
	    echo "test-asan: SPATTN_ISA=$$isa: not supported on this CPU, skipped"; continue; fi; \
	  echo "test-asan: ASan+UBSan ctest with SPATTN_ISA=$$isa"; \
	  SPATTN_ISA=$$isa $(ASAN_ENV) ctest --output-on-failure -j $(JOBS) -E '/avx2$$' || exit 1; \
	  break; \
	done

# ThreadSanitizer. GCC's TSan cannot see libgomp's barriers (libgomp is not
# instrumented), so every OpenMP parallel region reports false races. So this
# build uses clang with LLVM's libomp and its Archer tool (libarcher, OMPT),
# which tells TSan about OpenMP's synchronization: every suite runs, OpenMP
# regions included, and a report is a real race in code we own or call. The
# per-ISA suites run on their scalar instances only: the threading is the
# same on every ISA, and the other instances cost CI half a minute.
# OpenBLAS (uninstrumented pthreads) runs single-threaded here; the soak test
# is shortened (TSan costs 5-15x). ignore_noninstrumented_modules: reports
# whose racing accesses are both inside libomp itself (its own lock setup,
# uninstrumented) are dropped, as Archer asks; races in our code still count.
ARCHER := $(firstword $(wildcard /usr/lib/llvm-*/lib/libarcher.so))
test-tsan: deps
	cmake -S . -B $(TSAN) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
	  -DCMAKE_C_FLAGS=-fsanitize=thread -DCMAKE_CXX_FLAGS=-fsanitize=thread \
	  -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread \
	  -DSPATTN_BUILD_BENCH=OFF -DSPATTN_BUILD_TOOLS=OFF
	cmake --build $(TSAN) -j $(JOBS)
	cd $(TSAN) && OMP_TOOL_LIBRARIES=$(ARCHER) OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1 \
	  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ignore_noninstrumented_modules=1" \
	  SPATTN_SOAK_STEPS=300 \
	  ctest --output-on-failure -j $(JOBS) -E '/(avx2|avx512|avx512_bf16|amx|neon|neon_bf16)$$'

# libFuzzer harnesses (fuzz/), FUZZ_SECONDS each, over copies of fuzz/corpus.
test-fuzz: deps
	JOBS=$(JOBS) scripts/run-fuzzers.sh $(FUZZ_SECONDS)

# valgrind (memcheck) on the Release kernel suite, on the paths valgrind can
# decode (it has no AVX-512): per forced ISA, the dispatch, mask and error
# tests and that ISA's instances of the per-ISA suites (OpenBLAS baselines
# left out: OpenBLAS picks its own AVX-512 kernels). Only definite leaks
# count: libgomp never joins its worker threads, whose TLS shows as "possibly
# lost". The two ISAs run side by side, about 40 s.
test-valgrind: build
	@pids=(); for isa in scalar avx2; do \
	  echo "test-valgrind: SPATTN_ISA=$$isa"; \
	  SPATTN_ISA=$$isa OMP_NUM_THREADS=2 valgrind --error-exitcode=1 --leak-check=full \
	    --show-leak-kinds=definite --errors-for-leak-kinds=definite -q \
	    $(RELEASE)/tests/spattn_kernel_tests --gtest_brief=1 \
	    --gtest_filter="Dispatch.*:BlockMask*:Errors*:Isa/*/$$isa" & pids+=($$!); \
	done; for p in "$${pids[@]}"; do wait $$p || exit 1; done

# Installs the library and builds a separate project against it with find_package.
test-consumer: build
	cmake --install $(RELEASE) --prefix $(CURDIR)/$(INSTALL)
	cmake -S tests/consumer -B build/consumer -G Ninja -DCMAKE_PREFIX_PATH=$(CURDIR)/$(INSTALL)
	cmake --build build/consumer
	build/consumer/spattn_consumer
	build/consumer/spattn_consumer_c
	# The same C program through pkg-config, as README's install section shows.
	PKG_CONFIG_PATH=$(CURDIR)/$(INSTALL)/lib/pkgconfig gcc -std=c11 tests/consumer/main_c.c \
	    $$(PKG_CONFIG_PATH=$(CURDIR)/$(INSTALL)/lib/pkgconfig pkg-config --cflags --libs spattn) -o build/consumer/pc_c
	build/consumer/pc_c
	# README's examples, built exactly as README says (pkg-config).
	export PKG_CONFIG_PATH=$(CURDIR)/$(INSTALL)/lib/pkgconfig; \
	g++ -std=c++20 -O2 examples/quickstart.cpp $$(pkg-config --cflags --libs spattn) -o build/consumer/quickstart && \
	gcc -std=c11 -O2 examples/quickstart.c $$(pkg-config --cflags --libs spattn) -o build/consumer/quickstart_c
	build/consumer/quickstart > /dev/null
	build/consumer/quickstart_c > /dev/null
	$(CURDIR)/$(INSTALL)/bin/spattn-eval --version

# README's Python steps verbatim (a venv that sees Debian's numpy and torch,
# pip building the module from ./python with no network), then the pytest
# suite against the installed module, run from outside the source package.
PYTHON ?= /usr/bin/python3
test-python-install: deps
	rm -rf build/venv
	$(PYTHON) -m venv --system-site-packages build/venv
	build/venv/bin/pip install --no-build-isolation --no-index ./python
	cd build && venv/bin/python -c "import spattn; print('spattn', spattn.__version__, spattn.isa(), spattn.__file__)"
	cd build && venv/bin/python -m pytest -q ../python/tests

# Fully static tools for a machine without the packages (see bench/peers/).
static-tools: deps
	cmake -S . -B build/static -G Ninja -DCMAKE_BUILD_TYPE=Release -DSPATTN_STATIC_TOOLS=ON -DSPATTN_BUILD_TESTS=OFF
	cmake --build build/static -j $(JOBS) --target spattn-tune spattn-eval spattn-compare spattn-compare-dense

clean:
	rm -rf build

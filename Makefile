# Thin wrapper over CMake. `make tune` and `make test` are the two commands
# README starts with; both install what they need first.
SHELL := /bin/bash
JOBS ?= $(shell nproc)
RELEASE := build/release
NEON := build/neon
ASAN := build/asan
INSTALL := build/install

.PHONY: deps build tune test test-x86 test-neon test-asan test-consumer bench clean

deps:
	@scripts/install-deps.sh

build: deps
	cmake -S . -B $(RELEASE) -G Ninja -DCMAKE_BUILD_TYPE=Release
	cmake --build $(RELEASE) -j $(JOBS)

# The main job: the autotuner on the built-in default workload (heads 8, N 4096,
# head_dim 128, 64 steps), merging into tuning/<machine-id>.yaml, ending with the
# table against the dense baselines. TUNE_FLAGS passes more flags.
tune: build
	$(RELEASE)/tuner/spattn-tune $(TUNE_FLAGS)

bench: build
	$(RELEASE)/bench/spattn-bench --benchmark_counters_tabular=true

test: deps test-x86 test-neon test-asan test-consumer
	@echo "make test: x86 (every ISA here), NEON under qemu, ASan+UBSan and the consumer project all passed"

test-x86: build
	cd $(RELEASE) && ctest --output-on-failure -j $(JOBS)

test-neon: deps
	cmake -S . -B $(NEON) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -DCMAKE_TOOLCHAIN_FILE=$(CURDIR)/cmake/toolchain-aarch64.cmake \
	  -DSPATTN_WITH_BLAS=OFF -DSPATTN_WITH_YAML=OFF -DSPATTN_WITH_NUMA=OFF \
	  -DSPATTN_BUILD_BENCH=OFF -DSPATTN_BUILD_TOOLS=OFF -DSPATTN_GTEST_FROM_SOURCE=ON
	cmake --build $(NEON) -j $(JOBS)
	cd $(NEON) && ctest --output-on-failure -j $(JOBS)

test-asan: deps
	cmake -S . -B $(ASAN) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSPATTN_SANITIZE=ON \
	  -DSPATTN_BUILD_BENCH=OFF
	cmake --build $(ASAN) -j $(JOBS)
	cd $(ASAN) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS)

# Installs the library and builds a separate project against it with find_package.
test-consumer: build
	cmake --install $(RELEASE) --prefix $(CURDIR)/$(INSTALL)
	cmake -S tests/consumer -B build/consumer -G Ninja -DCMAKE_PREFIX_PATH=$(CURDIR)/$(INSTALL)
	cmake --build build/consumer
	build/consumer/spattn_consumer

clean:
	rm -rf build

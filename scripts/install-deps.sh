#!/usr/bin/env bash
# Installs every Debian package spattn needs to build, test and benchmark.
# Idempotent: when everything is present it only runs dpkg queries (well under a
# second); `apt-get update` runs only when something is missing.
set -euo pipefail

# Usage: install-deps.sh [build|test]. "build" (what `make tune` needs): the
# compiler, CMake and the libraries the library, tools and tests link.
# "test" (the default, `make test`): also the cross compiler and qemu for
# NEON, clang for the sanitizers and fuzzers, valgrind, pkg-config.
packages=(
  cmake ninja-build g++ make
  libxsimd-dev libopenblas-dev libnuma-dev
  libbenchmark-dev libgtest-dev libgmock-dev libyaml-cpp-dev nlohmann-json3-dev
)
if [[ "${1:-test}" == test ]]; then
  packages+=(
    g++-aarch64-linux-gnu qemu-user pkg-config
    # Fuzzing (libFuzzer ships in clang's runtime), clang+libomp+Archer for TSan,
    # valgrind for memcheck on the scalar/AVX2 paths.
    clang libclang-rt-14-dev libomp-dev valgrind
    # The Python module, its pip install (venv, no network), DLPack, and its
    # tests, including a small PyTorch model whose attention spattn replaces.
    pybind11-dev python3-dev python3-numpy python3-pytest libdlpack-dev
    python3-venv python3-pip python3-setuptools python3-wheel python3-torch
  )
elif [[ "$1" != build ]]; then
  echo "usage: install-deps.sh [build|test]" >&2
  exit 2
fi

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"

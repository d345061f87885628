#!/usr/bin/env bash
# Installs every Debian package spattn needs to build, test and benchmark.
# Idempotent: when everything is present it only runs dpkg queries (well under a
# second); `apt-get update` runs only when something is missing.
set -euo pipefail

packages=(
  cmake ninja-build g++ make
  libxsimd-dev libopenblas-dev libnuma-dev
  libbenchmark-dev libgtest-dev libgmock-dev libyaml-cpp-dev nlohmann-json3-dev
  g++-aarch64-linux-gnu qemu-user
  # Fuzzing (libFuzzer ships in clang's runtime), clang+libomp+Archer for TSan,
  # valgrind for memcheck on the scalar/AVX2 paths.
  clang libclang-rt-14-dev libomp-dev valgrind
)

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

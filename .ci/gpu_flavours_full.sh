#!/usr/bin/env bash
# Compile-check hipgrad's GPU flavours, each in its own build directory:
#   AMD     HIPGRAD_GPU=hip, Debian's (or a real) ROCm, HIP_PLATFORM=amd, for
#           gfx900;gfx906;gfx908;gfx90a;gfx1030                                   -- always;
#   NVIDIA  HIPGRAD_GPU=cuda, nvcc, for sm_80;sm_90 -- when nvcc is on PATH and the AMD part
#           finished within HIPGRAD_CI_CUDA_START_BEFORE_S seconds (default 1200).
# For each flavour it checks that the extension builds and imports; that on a machine without a
# device hipgrad.devices() == ["cpu"], gpu_unavailable_reason() names the runtime and its error,
# and hipgrad.tensor(..., device="gpu") raises ValueError with that reason (with a device: that
# "gpu:0" is listed); and that the test suite passes with that build (HIPGRAD_CI_TESTS, default
# "tests"). Exits non-zero on the first failure.
# Environment: HIPGRAD_CI_JOBS (default 2), HIPGRAD_CI_SKIP_CUDA=1, HIPGRAD_CI_BUILD_ROOT
# (default build/ci-gpu). Installs Debian's hipcc and libamdhip64-dev when hipcc is missing.
# Dev builds write python/hipgrad/_C*.so; whatever was there is put back.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=${HIPGRAD_CI_JOBS:-2}
build_root=${HIPGRAD_CI_BUILD_ROOT:-build/ci-gpu}
tests=${HIPGRAD_CI_TESTS:-tests}
cuda_deadline=${HIPGRAD_CI_CUDA_START_BEFORE_S:-1200}
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }

saved=$(mktemp -d)
cp -p python/hipgrad/_C*.so "$saved"/ 2>/dev/null || true
restore() {
  rm -f python/hipgrad/_C*.so
  cp -p "$saved"/_C*.so python/hipgrad/ 2>/dev/null || true
  rm -rf "$saved"
}
trap restore EXIT

check_module() {  # $1 = hip | cuda
  PYTHONPATH=python python3 .ci/check_gpu_build.py "$1"
}

flavour() {  # $1 = hip | cuda, then extra cmake arguments
  local platform=$1
  shift
  local dir="$build_root/$platform"
  echo "== [$(elapsed)s] $platform flavour: configure and build in $dir (-j$jobs)"
  cmake -S . -B "$dir" -G Ninja -DHIPGRAD_GPU="$platform" "$@" > "$dir.configure.log" 2>&1 ||
    { cat "$dir.configure.log"; echo "FAIL: $platform configure"; exit 1; }
  grep "hipgrad:" "$dir.configure.log" | sed 's/^/   /'
  cmake --build "$dir" -j"$jobs" > "$dir.build.log" 2>&1 ||
    { tail -60 "$dir.build.log"; echo "FAIL: $platform build"; exit 1; }
  if grep -q -i "warning" "$dir.build.log"; then
    echo "   compiler warnings:"
    grep -i "warning" "$dir.build.log" | sort -u | head -20 | sed 's/^/     /'
  fi
  echo "== [$(elapsed)s] $platform flavour: import and device checks"
  check_module "$platform" || { echo "FAIL: $platform import/device checks"; exit 1; }
  echo "== [$(elapsed)s] $platform flavour: pytest $tests"
  PYTHONPATH=python python3 -m pytest -q -p no:cacheprovider $tests > "$dir.pytest.log" 2>&1 ||
    { tail -40 "$dir.pytest.log"; echo "FAIL: $platform tests"; exit 1; }
  tail -1 "$dir.pytest.log" | sed 's/^/   /'
  echo "PASS: $platform flavour ($(elapsed)s so far)"
}

mkdir -p "$build_root"
if ! command -v hipcc > /dev/null; then
  echo "== installing Debian's hipcc and libamdhip64-dev"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hipcc libamdhip64-dev > /dev/null
fi
export HIP_PLATFORM=amd  # hipconfig says nvidia where nvcc is on PATH
flavour hip -DHIPGRAD_HIP_ARCHS="gfx900;gfx906;gfx908;gfx90a;gfx1030"

if [ "${HIPGRAD_CI_SKIP_CUDA:-0}" = "1" ]; then
  echo "SKIP: cuda flavour (HIPGRAD_CI_SKIP_CUDA=1)"
elif ! command -v nvcc > /dev/null; then
  echo "SKIP: cuda flavour (no nvcc on PATH)"
elif [ "$(elapsed)" -ge "$cuda_deadline" ]; then
  echo "SKIP: cuda flavour (the AMD part took $(elapsed)s," \
       ">= HIPGRAD_CI_CUDA_START_BEFORE_S=$cuda_deadline)"
else
  flavour cuda -DHIPGRAD_CUDA_ARCHS="80;90"
fi
echo "== GPU flavours checked in $(elapsed)s"

#!/usr/bin/env bash
# Compile-check every GPU source (no GPU here, nothing runs). Arguments: the platforms to check,
# `amd` and/or `nvidia` (default both):
#   AMD:    Debian's hipcc (ROCm 5.2), HIP_PLATFORM=amd, gfx900 gfx906 gfx908 gfx90a gfx1030;
#   NVIDIA: nvcc, sm_80 and sm_90, when nvcc is on PATH.
# Each csrc/hip/*.hip becomes an object file, two compilers at a time. The full flavour builds
# (module linked, imported, test suite run against it) are .ci/gpu_flavours_full.sh: about
# twice CI's budget on 2 cores, so run them by hand or on a bigger machine.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
if ! command -v hipcc >/dev/null; then
  echo "installing Debian's hipcc and libamdhip64-dev"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hipcc libamdhip64-dev >/dev/null
fi
export out
amd() {
  echo "AMD    gfx900 gfx906 gfx908 gfx90a gfx1030: $1"
  HIP_PLATFORM=amd hipcc -std=c++17 -O2 -x hip --offload-arch=gfx900 --offload-arch=gfx906 \
    --offload-arch=gfx908 --offload-arch=gfx90a --offload-arch=gfx1030 -Icsrc \
    -DHIPGRAD_GPU_PLATFORM='"hip"' -DHIPGRAD_VERSION='"ci"' -c "$1" -o "$out/$(basename "$1").amd.o"
}
nvidia() {
  echo "NVIDIA sm_80 sm_90: $1"
  nvcc -std=c++17 -O2 -x cu -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
    -DHIPGRAD_GPU_CUDA -DHIPGRAD_GPU_PLATFORM='"cuda"' -DHIPGRAD_VERSION='"ci"' -Icsrc \
    -c "$1" -o "$out/$(basename "$1").cuda.o"
}
export -f amd nvidia
platforms=${*:-amd nvidia}
for p in $platforms; do
  case $p in
    amd) ls csrc/hip/*.hip | xargs -P2 -I{} bash -c 'amd {}' ;;
    nvidia)
      if command -v nvcc >/dev/null; then
        ls csrc/hip/*.hip | xargs -P2 -I{} bash -c 'nvidia {}'
      else
        echo "nvcc not found: NVIDIA compile-check skipped"
      fi ;;
    *) echo "unknown platform '$p' (expected amd or nvidia)"; exit 2 ;;
  esac
done
echo "GPU kernel sources compile for: $platforms"

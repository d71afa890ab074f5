#!/usr/bin/env bash
# Compile-check the GPU kernel sources for both platforms (no GPU here, nothing runs):
#   AMD:    Debian's hipcc (ROCm 5.2), HIP_PLATFORM=amd, gfx900 gfx906 gfx908 gfx90a gfx1030;
#   NVIDIA: nvcc, sm_80 and sm_90, when nvcc is on PATH.
# Each csrc/hip/*.hip is compiled to an object file. Linking the GPU flavour of the module needs
# the GPU runtime (csrc/hip/runtime.hip) and its CMake wiring, which have not landed yet.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
if ! command -v hipcc >/dev/null; then
  echo "installing Debian's hipcc and libamdhip64-dev"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hipcc libamdhip64-dev >/dev/null
fi
archs=(gfx900 gfx906 gfx908 gfx90a gfx1030)
offload=$(printf -- '--offload-arch=%s ' "${archs[@]}")
for f in csrc/hip/*.hip; do
  echo "AMD    ${archs[*]}: $f"
  HIP_PLATFORM=amd hipcc -std=c++17 -O2 -x hip $offload -Icsrc -c "$f" -o "$out/$(basename "$f").amd.o"
done
if command -v nvcc >/dev/null; then
  for f in csrc/hip/*.hip; do
    echo "NVIDIA sm_80 sm_90: $f"
    nvcc -std=c++17 -O2 -x cu -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
      -DHIPGRAD_GPU_CUDA -Icsrc -c "$f" -o "$out/$(basename "$f").cuda.o"
  done
else
  echo "nvcc not found: NVIDIA compile-check skipped"
fi
rm -rf "$out"
echo "GPU kernel sources compile for AMD and NVIDIA"

#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run of the CPU flavour: `bash .ci/test_asan.sh`.
#
# Builds _C with -DHIPGRAD_GPU=off and -fsanitize=address,undefined (UB is fatal through
# -fno-sanitize-recover) into build/asan (BUILD_DIR: absolute, or relative to the repository
# root), next to a copy of python/hipgrad there, so neither the source tree's development
# module nor CI's installed AMD flavour in site-packages is touched; then runs pytest on that
# copy with the ASan runtime preloaded (the Python interpreter itself is not instrumented, so
# the runtime must come first in the process).
# Any finding aborts the test process, and the script fails.
#
# What it runs (ASAN_TESTS overrides): the op, tensor, nn and engine tests -- every C++ kernel,
# its argument checks and error paths, the tensor/view/DLPack code and the engine's steps. The
# training, CLI and profiling tests call the same kernels again through longer Python paths, so
# they add time, not coverage of C++. Cost on CI's 2 cores, estimated from CPU time (measured on
# a shared machine at load 20-27): the instrumented build ~12 CPU-minutes (~6 min wall), the
# tests ~1.7 CPU-minutes (~2 min wall): about 8 minutes added to CI's 12, well under 45.
set -euo pipefail
cd "$(dirname "$0")/.."
B="${BUILD_DIR:-build/asan}"
case "$B" in /*) ;; *) B="$PWD/$B" ;; esac  # every path below is absolute from here
start=$(date +%s)
step() { echo "== asan [$(( $(date +%s) - start ))s] $*"; }

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g1"
step "configure + build the CPU flavour with ASan + UBSan into $B"
mkdir -p "$B/python"
rm -rf "$B/python/hipgrad" && cp -r python/hipgrad "$B/python/" && rm -f "$B/python/hipgrad"/_C*.so
cmake -S . -B "$B" -G Ninja -DHIPGRAD_GPU=off -DCMAKE_BUILD_TYPE=Release \
  -DHIPGRAD_MODULE_DIR="$B/python/hipgrad" -DCMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF \
  -DCMAKE_CXX_FLAGS="$SAN" -DCMAKE_MODULE_LINKER_FLAGS="-fsanitize=address,undefined" > "$B/configure.log" ||
  { cat "$B/configure.log"; echo "FAIL: asan configure"; exit 1; }
ninja -C "$B" > "$B/build.log" || { tail -50 "$B/build.log"; echo "FAIL: asan build"; exit 1; }

# libstdc++ is preloaded after the ASan runtime: python3 does not link it, and ASan's __cxa_throw
# interceptor must find the real one when it starts (else the first C++ throw fails a CHECK).
ASAN_RT="$(${CXX:-c++} -print-file-name=libasan.so)"
CXX_RT="$(${CXX:-c++} -print-file-name=libstdc++.so.6)"
[ -e "$ASAN_RT" ] || { echo "FAIL: no ASan runtime ($ASAN_RT)"; exit 1; }
step "tests under ASan + UBSan"
# detect_leaks=0: CPython and pybind11 keep interned objects, type objects and module state
# alive until exit on purpose, so LeakSanitizer would report thousands of allocations that are
# not leaks; hipgrad's own buffers are freed through the caching allocator, which the
# memory_stats checks in the suite account for.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:strict_init_order=1:detect_stack_use_after_return=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
LD_PRELOAD="$ASAN_RT $CXX_RT" PYTHONPATH="$B/python" python3 -m pytest -q -p no:cacheprovider \
  ${ASAN_TESTS:-tests/ops tests/test_tensor.py tests/nn tests/engine} "$@"
step "asan done: 0 findings"

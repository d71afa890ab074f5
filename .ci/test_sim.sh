#!/usr/bin/env bash
# The GPU half of the suite on the simulated HIP device (HIPGRAD_GPU=sim), on a machine without
# a GPU. The real .hip kernels run on the host (csrc/hip/sim); see README "The simulated device".
#  1. build the sim flavour into its own build directory ($HIPGRAD_SIM_BUILD, default
#     build/ci-sim). It is not installed: the module and a copy of python/hipgrad go to
#     <build>/pkg, used through PYTHONPATH (site-packages keeps the AMD flavour of .ci/run);
#  2. every GPU test parameter (pytest -m gpu) at wavefront 64, bounds checks on;
#  3. the warp-sensitive part (reductions, softmax, pooling, batch norm, conv, int8, the kernel
#     variants) at wavefront 32, with each block's threads scheduled in reverse order so that a
#     shared-memory race reads poison (NaN) instead of the value; the same float64 references;
#  4. coverage: every GPU kernel of build_info()["kernels"] (defaults, alternates, vendor
#     fallbacks) ran in some test, and every kernel launch site of csrc/hip launched (v0 kernels,
#     int8 paths, the warp scatter): the ones that did not are listed and the step fails.
# Any failure exits non-zero with the step named.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${HIPGRAD_SIM_BUILD:-build/ci-sim}
start=$(date +%s)
step() { echo "== sim [$(( $(date +%s) - start ))s] $*"; }

step "build the sim flavour into $B"
mkdir -p "$B"
gen=()
command -v ninja > /dev/null && gen=(-G Ninja)
cmake -S . -B "$B" "${gen[@]}" -DHIPGRAD_GPU=sim -DCMAKE_BUILD_TYPE=Release \
  -DHIPGRAD_MODULE_DIR="$PWD/$B/module" > "$B.cmake.log" 2>&1 ||
  { cat "$B.cmake.log"; echo "FAIL: sim configure"; exit 1; }
cmake --build "$B" -j "$(nproc)" > "$B.build.log" 2>&1 ||
  { tail -50 "$B.build.log"; echo "FAIL: sim build"; exit 1; }
rm -rf "$B/pkg" && mkdir -p "$B/pkg"
(cd python && tar cf - --exclude='_C*.so' --exclude=__pycache__ hipgrad) | tar xf - -C "$B/pkg"
cp "$B"/module/_C*.so "$B/pkg/hipgrad/"
export PYTHONPATH="$PWD/$B/pkg:$PWD/.ci"
python3 -c "import hipgrad as hg; f = hg.build_info()['facts']; assert f['gpu.platform'] == 'sim', f; \
print(hg.devices(), f['gpu.device'], f['gpu.arch'])" || { echo "FAIL: sim import"; exit 1; }
rm -f "$B"/ran.*

step "pytest -m gpu at wavefront 64"
HIPGRAD_SIM_WARP=64 HIPGRAD_SIM_RAN="$B/ran.64" HIPGRAD_SIM_COVERAGE="$B/ran.64" \
  python3 -m pytest -m gpu -q -p no:cacheprovider -p sim_coverage tests ||
  { echo "FAIL: GPU tests on the simulated device at wavefront 64"; exit 1; }

step "pytest -m gpu at wavefront 32, reversed thread order (warp-sensitive subset)"
HIPGRAD_SIM_WARP=32 HIPGRAD_SIM_ORDER=reverse HIPGRAD_SIM_RAN="$B/ran.32" HIPGRAD_SIM_COVERAGE="$B/ran.32" \
  python3 -m pytest -m gpu -q -p no:cacheprovider -p sim_coverage tests/gpu tests/ops/test_loss.py \
  tests/ops/test_pool.py tests/ops/test_layers.py tests/ops/test_quant.py tests/ops/test_conv.py \
  tests/ops/test_shape.py ||
  { echo "FAIL: GPU tests on the simulated device at wavefront 32 (reversed order)"; exit 1; }

step "kernel coverage"
python3 .ci/sim_coverage.py check "$B/sim_src/launch_sites.txt" "$B/ran.64" "$B/ran.32" ||
  { echo "FAIL: GPU kernels that no test ran (listed above)"; exit 1; }
step "sim done"

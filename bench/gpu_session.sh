#!/usr/bin/env bash
# One call on a lent NVIDIA machine (the `device` tool): build the CUDA flavour in place, check it,
# run the GPU tests, compute-sanitizer and the benches. Stages run in the order given:
#   bash bench/gpu_session.sh setup build check test sanitize bench-ops bench-infer ...
# setup      install carried wheels (.whl/*.whl, e.g. scipy-openblas32) into /tmp/site
# build      cmake HIPGRAD_GPU=cuda for sm_90 (HIPGRAD_CUDA_ARCHS), module into python/hipgrad
# check      .ci/check_gpu_build.py cuda (imports, lists gpu:0, every op has a GPU kernel)
# test       pytest -m gpu (every GPU-parametrized test and tests/gpu), xdist when present
# test-rest  pytest -m "not gpu" with the GPU visible (device="auto" picks it)
# sanitize   compute-sanitizer memcheck / racecheck over bench/gpu_sanitize.py
# bench-ops  bench_gemm, bench_conv, bench_elementwise (results written under $OUT)
# bench-infer bench_infer and bench_train on gpu:0 (results written under $OUT)
# pack       results (*.json, *.md) into $OUT/results.tar, logs into $OUT/logs.tar
# Logs go to $OUT (or ./gpu-out when OUT is unset); the last lines printed are a summary.
# HIPGRAD_SESSION_DEADLINE_S (default 570): later stages are skipped once it has passed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
start=$(date +%s)
deadline=${HIPGRAD_SESSION_DEADLINE_S:-570}
summary=()
elapsed() { echo $(( $(date +%s) - start )); }
left() { echo $(( deadline - $(elapsed) )); }
note() { echo "== [$(elapsed)s] $*"; summary+=("[$(elapsed)s] $*"); }
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/python:/tmp/site${PYTHONPATH:+:$PYTHONPATH}
export HIPGRAD_CACHE_DIR=/tmp/hipgrad-cache
py=python3
xdist=""
$py -c "import xdist" 2>/dev/null && xdist="-n 12"

stage_setup() {
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader
  nvcc --version | tail -1
  $py --version
  if ls .whl/*.whl >/dev/null 2>&1; then
    $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl ||
      { note "setup: wheel install FAILED"; return 1; }
  fi
  note "setup: $(nvidia-smi --query-gpu=name --format=csv,noheader), $($py -c 'import torch; print("torch", torch.__version__)')"
}

stage_build() {
  local archs=${HIPGRAD_CUDA_ARCHS:-90}
  cmake -S . -B build/cuda -G Ninja -DHIPGRAD_GPU=cuda -DHIPGRAD_CUDA_ARCHS="$archs" \
    -DCMAKE_BUILD_TYPE="${HIPGRAD_BUILD_TYPE:-Release}" \
    -DPython_EXECUTABLE="$(command -v $py)" > "$OUT/build.log" 2>&1 &&
  cmake --build build/cuda -j16 >> "$OUT/build.log" 2>&1
  local rc=$?
  grep "hipgrad:" "$OUT/build.log" | head -5
  if [ $rc -ne 0 ]; then
    grep -E "error|Error" "$OUT/build.log" | head -40
    note "build: FAILED (build.log)"
    return 1
  fi
  grep -i "warning" "$OUT/build.log" | sort -u | head -20
  note "build: ok for sm_$archs"
}

stage_check() {
  local n
  n=$(nm -C -D --defined-only python/hipgrad/_C*.so | grep -c "std::locale::classic\|std::ios_base::Init" || true)
  [ "$n" -ne 0 ] && note "check: the module carries its own copy of libstdc++ ($n symbols)"
  $py .ci/check_gpu_build.py cuda 2>&1 | tee "$OUT/check.log"
  local rc=${PIPESTATUS[0]}
  $py -c "import hipgrad as hg, json; f=hg.build_info()['facts']; print(json.dumps({k: v for k, v in f.items() if k.startswith(('gpu', 'vendor'))}, indent=1))" 2>&1 | tee -a "$OUT/check.log"
  [ $rc -eq 0 ] && note "check: ok" || { note "check: FAILED"; return 1; }
}

run_pytest() {  # $1 = log name, then pytest arguments
  local log=$1; shift
  local budget=$(( $(left) - 20 ))
  [ $budget -lt 30 ] && { note "$log: skipped (no time left)"; return 1; }
  timeout -k 10 $budget $py -m pytest -q -p no:cacheprovider -p no:benchmark $xdist -o addopts="--strict-markers" \
    -rfE "$@" > "$OUT/$log.log" 2>&1
  local rc=$?
  grep -E "^(FAILED|ERROR)" "$OUT/$log.log" | head -60
  note "$log: rc=$rc $(tail -1 "$OUT/$log.log")"
}

stage_test() { run_pytest pytest-gpu tests -m gpu; }
stage_test-rest() { run_pytest pytest-rest tests -m "not gpu"; }

stage_sanitize() {
  local tool
  for tool in memcheck racecheck; do
    local budget=$(( $(left) - 20 ))
    [ $budget -lt 30 ] && { note "sanitize $tool: skipped (no time left)"; continue; }
    timeout -k 10 $budget compute-sanitizer --tool $tool --error-exitcode 3 \
      $py bench/gpu_sanitize.py > "$OUT/sanitize-$tool.log" 2>&1
    local rc=$?
    tail -5 "$OUT/sanitize-$tool.log"
    note "sanitize $tool: rc=$rc $(grep -E 'ERROR SUMMARY' "$OUT/sanitize-$tool.log" | tail -1)"
  done
}

run_bench() {  # $1 = bench name (bench/bench_$1.py), then its extra arguments
  local b=$1; shift
  local budget=$(( $(left) - 20 ))
  [ $budget -lt 30 ] && { note "bench_$b: skipped (no time left)"; return 1; }
  timeout -k 10 $budget $py bench/bench_$b.py --device gpu:0 --out "$OUT" "$@" > "$OUT/bench-$b.log" 2>&1
  note "bench_$b: rc=$?"
  tail -25 "$OUT/bench-$b.log"
}

stage_bench-ops() { run_bench gemm; run_bench conv; run_bench elementwise; }
stage_bench-infer() { run_bench infer --threads 16; }
stage_bench-train() { run_bench train --threads 16; }

stage_pack() {  # the device tool returns at most 8 files: results in one tar, logs in another
  (cd "$OUT" && tar cf results.tar --remove-files $(ls *.json *.md 2>/dev/null) 2>/dev/null; \
   tar cf logs.tar --remove-files $(ls *.log 2>/dev/null) 2>/dev/null; ls -la)
}

for s in "$@"; do
  if [ "$(left)" -le 20 ] && [ "$s" != pack ]; then note "$s: skipped (deadline)"; continue; fi
  echo "== [$(elapsed)s] stage $s"
  "stage_$s" || { case $s in setup|build|check) note "stopping after $s"; break ;; esac; }
done
echo
echo "==== summary ($(elapsed)s)"
printf '%s\n' "${summary[@]}"

"""CI check of a GPU-flavoured hipgrad build: `python3 .ci/check_gpu_build.py hip|cuda`.

The extension imports, says it was built for that platform with GPU kernels registered, and
either lists a device ("gpu:0") or -- on a machine without one -- lists only "cpu", gives a reason
naming the runtime and its error, and refuses device="gpu" with a ValueError carrying it.
"""
import sys

import hipgrad as hg

platform = sys.argv[1]
lib = {"hip": "HIP", "cuda": "CUDA"}[platform]
facts = hg.build_info()["facts"]
assert facts.get("gpu.platform") == platform, f"gpu.platform is {facts.get('gpu.platform')!r}"
gpu_kernels = sorted(r["kernel"] for r in hg.build_info()["kernels"] if r["backend"] == "gpu")
assert any(k.startswith("gpu.gemm") for k in gpu_kernels), gpu_kernels
rows = hg.build_info()["kernels"]
have = {(r["op"], r["backend"], r["variant"]) for r in rows}
# Ops about the CPU GEMM's own packed layout (csrc/core/ops.h): no GPU counterpart by design; their
# front ends refuse tensors on any other device with a ValueError naming it.
CPU_ONLY = {"pack_linear_weight", "linear_bias_act_packed", "conv2d_bias_act_packed", "qpack_weight"}
missing = sorted(op for op, backend, variant in have if backend == "cpu" and variant == "handwritten"
                 and (op, "gpu", "handwritten") not in have and op not in CPU_ONLY)
assert CPU_ONLY <= {op for op, _, _ in have}, f"CPU_ONLY names ops this build lacks: {CPU_ONLY}"
assert not missing, f"ops with a CPU kernel but no handwritten GPU kernel in this build: {missing}"
print(f"   built: {platform} {facts.get('gpu.runtime_version')} for {facts.get('gpu.archs')}; "
      f"{len(gpu_kernels)} gpu kernels registered")
devices = hg.devices()
reason = hg.gpu_unavailable_reason()
if len(devices) > 1:
    assert devices[1] == "gpu:0" and reason == "", (devices, reason)
    print(f"   device: {facts.get('gpu.device')} ({facts.get('gpu.arch')}); devices() = {devices}")
else:
    assert devices == ["cpu"], devices
    assert reason.startswith(f"{lib} runtime: ") and "(" in reason, f"unclear reason: {reason!r}"
    try:
        hg.tensor([1.0], device="gpu")
    except ValueError as e:
        assert reason in str(e), str(e)
    else:
        raise SystemExit("hg.tensor([1.0], device='gpu') did not raise ValueError")
    print(f"   no device: devices() = {devices}; reason: {reason}")

"""Run under mpiexec: all_reduce_/broadcast_ against NumPy (float64 sums) for odd sizes and
every dtype the trainer and the logs use; a bucket boundary inside a tensor."""

import sys

import numpy as np

import hipgrad as hg
import hipgrad.distributed as dist
from hipgrad import nn
from hipgrad.training.grad_reducer import GradReducer

dev = dist.init()
r, n = dist.rank(), dist.world_size()
assert n >= 2, n
assert 0 <= dist.local_rank() < n and dist.device() == dev == "cpu"


def rank_data(seed, shape, dtype, rank):
    rng = np.random.default_rng([seed, rank])
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    lo, hi = {np.dtype(np.uint8): (0, 60), np.dtype(np.int8): (-30, 30)}.get(np.dtype(dtype), (-10**6, 10**6))
    return rng.integers(lo, hi, size=shape).astype(dtype)   # sums of n <= 2 ranks fit


for seed, shape in enumerate([(1,), (7,), (3, 5), (2, 3, 17), (1001,)]):
    for dtype in (np.float32, np.int64, np.int32, np.int8, np.uint8):
        mine = rank_data(seed, shape, dtype, r)
        ref = sum(rank_data(seed, shape, dtype, k).astype(np.float64) for k in range(n))
        t = hg.tensor(mine, dtype=dtype)
        dist.all_reduce_(t, op="sum")
        tol = 1e-5 if dtype == np.float32 else 0
        np.testing.assert_allclose(t.numpy(), ref, rtol=tol, atol=tol, err_msg=f"sum {dtype} {shape}")
        if np.dtype(dtype).kind == "f":
            t = hg.tensor(mine, dtype=dtype)
            dist.all_reduce_(t, op="avg")
            np.testing.assert_allclose(t.numpy(), ref / n, rtol=tol, atol=tol)
        root = (seed + 1) % n
        t = hg.tensor(np.full(shape, 99, dtype) if r != root else mine, dtype=dtype)
        dist.broadcast_(t, root=root)
        np.testing.assert_array_equal(t.numpy(), rank_data(seed, shape, dtype, root))

# errors name the argument
for bad, call in ((ValueError, lambda: dist.all_reduce_(hg.zeros([3]), op="max")),
                  (ValueError, lambda: dist.broadcast_(hg.zeros([3]), root=n)),
                  (TypeError, lambda: dist.all_reduce_(np.zeros(3)))):
    try:
        call()
    except bad as e:
        assert "all_reduce_" in str(e) or "broadcast_" in str(e), e
    else:
        raise AssertionError("no error")

# buckets: a 40-float bucket cuts the 7x9 weight and the 9-bias; sums equal the NumPy average
lin = nn.Linear(7, 9)
lin2 = nn.Linear(9, 5)
params = list(lin.parameters()) + list(lin2.parameters())
red = GradReducer(params[::-1], bucket_mb=40 * 4 / (1 << 20))
assert len(red.buckets) > 2 and any(len(segs) > 1 for _, segs in red.buckets)
cut = {i for _, segs in red.buckets for i, s0, s1, _ in segs if s0 > 0}
assert cut, "no bucket boundary inside a tensor"
grads = [rank_data(100 + k, p.data.shape, np.float32, r) for k, p in enumerate(params)]
scale = (r + 1) / sum(range(1, n + 1))   # unequal shares of a global batch
red.begin(scale)
for p, g in zip(params[::-1], grads[::-1]):
    nn.module.accumulate_grad(p, hg.tensor(g))
fired = sum(q is not None for q in red.requests)
assert fired == len(red.buckets), (fired, len(red.buckets))   # all started before finish
red.finish()
for k, p in enumerate(params):
    ref = sum(rank_data(100 + k, p.data.shape, np.float32, q).astype(np.float64) * (q + 1)
              for q in range(n)) / sum(range(1, n + 1))
    np.testing.assert_allclose(p.grad.numpy(), ref, rtol=1e-5, atol=1e-6)
assert not nn.grad.GRAD_HOOKS
# ranks that disagree are refused, naming the rank
from hipgrad.training.parallel import sync_model  # noqa: E402


def refused(call, needle):
    try:
        call()
    except dist.DistributedError as e:
        assert needle in str(e) and "rank 1" in str(e), e
    else:
        raise AssertionError(f"not refused: {needle}")


refused(lambda: dist.check_consistent("the data", f"rows of rank {min(r, 1)}"), "the data")
spec_model = hg.build_model("mlp", (1, 4, 4), 3, hidden=(5 + min(r, 1),))
refused(lambda: sync_model(spec_model), "model spec")
hg.manual_seed(r)
same = hg.build_model("mlp", (1, 4, 4), 3, hidden=(5,))
sync_model(same)       # other weights on each rank before: equal after the broadcast
dist.barrier()
print(f"rank {r}: ok", flush=True)

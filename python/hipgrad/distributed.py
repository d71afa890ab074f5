"""Data-parallel processes on MPI (mpi4py): launch with `mpiexec -n N python ...`.

    import hipgrad.distributed as dist
    dist.init()                       # device for this rank: "cpu" (its share of the cores) or gpu:k
    dist.all_reduce_(t, op="avg")     # in place, every rank gets the mean
    dist.broadcast_(t, root=0)

CPU tensors go to MPI zero-copy (a NumPy view of the tensor's memory). GPU tensors go through
NCCL (NVIDIA) or RCCL (AMD) where the build found one (csrc/hip/vendor/nccl.cpp: rank 0's
ncclGetUniqueId is broadcast over MPI, every rank joins with ncclCommInitRank on its GPU, then
ncclAllReduce / ncclBroadcast on a communication stream ordered after hipgrad's stream with
events); otherwise they are staged through host memory and MPI. `build_info()` says which. Every
MPI error becomes a `DistributedError` naming the call; waits on non-blocking collectives
poll with a deadline (HIPGRAD_DIST_TIMEOUT seconds, default 300) and then abort the whole job,
so a rank that dies or hangs never leaves the others hanging silently. The Trainer's bucketed
gradient averaging is hipgrad.training.grad_reducer.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

import numpy as np

from .tensor import Tensor, borrow

__all__ = ["DistributedError", "init", "is_initialized", "rank", "world_size", "local_rank",
           "local_size", "device", "all_reduce_", "broadcast_", "barrier", "build_info",
           "timeout", "wait", "check_consistent", "allreduce_values"]

_STATE: dict[str, Any] = {"comm": None, "rank": 0, "size": 1, "local_rank": 0,
                          "local_size": 1, "device": "cpu", "gpu_comm": None}
_OPS = ("avg", "sum")


class DistributedError(RuntimeError):
    """An MPI call failed, a collective timed out, or the ranks disagree."""


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise DistributedError("hipgrad.distributed needs mpi4py and an MPI "
                               "(pip install 'hipgrad[dist]', i.e. mpi4py mpich)") from e
    return MPI


def _call(what: str, fn, *args: Any) -> Any:
    """fn(*args), an MPI exception re-raised as DistributedError naming `what` and the rank."""
    MPI = _mpi()
    try:
        return fn(*args)
    except MPI.Exception as e:
        raise DistributedError(f"{what} failed on rank {_STATE['rank']}: "
                               f"{e.Get_error_string()}") from e


def timeout() -> float:
    """Seconds a collective may take before the job is aborted (HIPGRAD_DIST_TIMEOUT)."""
    raw = os.environ.get("HIPGRAD_DIST_TIMEOUT", "300")
    try:
        value = float(raw)
    except ValueError:
        raise DistributedError(f"HIPGRAD_DIST_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise DistributedError(f"HIPGRAD_DIST_TIMEOUT must be positive, got {raw!r}")
    return value


def init(threads: bool = True) -> str:
    """Join the MPI job (idempotent); returns this rank's device. With `threads`, a CPU rank
    sets hipgrad's thread count to its share of the cores (cores // ranks on this node)."""
    if _STATE["comm"] is not None:
        return _STATE["device"]
    MPI = _mpi()
    comm = MPI.COMM_WORLD
    comm.Set_errhandler(MPI.ERRORS_RETURN)  # errors as exceptions, not an abort inside MPI
    node = _call("MPI_Comm_split_type", comm.Split_type, MPI.COMM_TYPE_SHARED)
    _STATE.update(comm=comm, rank=comm.Get_rank(), size=comm.Get_size(),
                  local_rank=node.Get_rank(), local_size=node.Get_size())
    node.Free()
    from . import runtime
    gpus = [d for d in runtime.devices() if d.startswith("gpu")]
    if gpus:
        _STATE["device"] = f"gpu:{_STATE['local_rank'] % len(gpus)}"
        _STATE["gpu_comm"] = _gpu_comm(comm, int(_STATE["device"].split(":")[1]))
    else:
        _STATE["device"] = "cpu"
        if threads:
            runtime.set_num_threads(max(1, (os.cpu_count() or 1) // _STATE["local_size"]))
    return _STATE["device"]


def _gpu_library() -> str | None:
    from ._native import _C
    return _C.collectives.library()


def _gpu_comm(comm: Any, device: int) -> Any:
    """This rank's NCCL/RCCL communicator on gpu:device (None without the library): rank 0's
    unique id broadcast over MPI, then ncclCommInitRank on every rank."""
    if _gpu_library() is None:
        return None
    from ._native import _C
    uid = _C.collectives.unique_id() if _STATE["rank"] == 0 else None
    uid = _call("MPI_Bcast (NCCL unique id)", comm.bcast, uid, 0)
    return _C.collectives.create(uid, _STATE["size"], _STATE["rank"], device)


def is_initialized() -> bool:
    return _STATE["comm"] is not None


def rank() -> int:
    return _STATE["rank"]


def world_size() -> int:
    return _STATE["size"]


def local_rank() -> int:
    return _STATE["local_rank"]


def local_size() -> int:
    return _STATE["local_size"]


def device() -> str:
    return _STATE["device"]


def build_info() -> dict[str, Any]:
    """Which transport each kind of buffer uses."""
    try:
        from mpi4py import MPI
        mpi = MPI.Get_library_version().splitlines()[0].strip()
    except ImportError:
        mpi = None
    lib = _gpu_library()
    return {"mpi": mpi, "cpu_collectives": "mpi (zero-copy)",
            "gpu_collectives": (f"{lib} (device buffers, no host copy)" if lib is not None
                                else "host staging over mpi (no NCCL/RCCL compiled in)")}


def _comm():
    if _STATE["comm"] is None:
        raise DistributedError("hipgrad.distributed: call init() first")
    return _STATE["comm"]


def _host_view(t: Tensor, what: str) -> tuple[np.ndarray, bool]:
    """(array over t's memory or a host copy of it, whether it is a copy to write back)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{what}: tensor must be a hipgrad Tensor, got {type(t).__name__}")
    if str(t.device).startswith("cpu"):
        return np.asarray(t, copy=False), False  # a view (ValueError where none exists)
    return np.ascontiguousarray(t.numpy()), True


def _write_back(t: Tensor, host: np.ndarray) -> None:
    t.copy_(borrow(host, device=t.device, dtype=host.dtype))


def wait(requests: list, what: str) -> None:
    """Wait for non-blocking requests, polling until timeout(); then abort the job with a
    message (a dead or stuck rank must not hang the others)."""
    MPI = _mpi()
    deadline = time.monotonic() + timeout()
    pending = [r for r in requests]
    polls = 0
    while True:
        done = _call(what, MPI.Request.Testall, pending)  # also drives MPI's progress
        if done:
            return
        polls += 1
        if time.monotonic() > deadline:
            msg = (f"hipgrad.distributed: {what} on rank {rank()} timed out after {timeout():g} s "
                   "(another rank died or hangs); aborting the job")
            import sys
            print(msg, file=sys.stderr, flush=True)
            _comm().Abort(3)   # asks the launcher to end every rank
            raise DistributedError(msg)  # where the launcher lets this process go on
        time.sleep(0 if polls < 2000 else 0.0002)  # spin first: short waits stay short


def _mpi_type(arr: np.ndarray, what: str):
    MPI = _mpi()
    types = {np.dtype(np.float32): MPI.FLOAT, np.dtype(np.float64): MPI.DOUBLE,
             np.dtype(np.int32): MPI.INT32_T, np.dtype(np.int64): MPI.INT64_T,
             np.dtype(np.uint8): MPI.UINT8_T, np.dtype(np.int8): MPI.INT8_T,
             np.dtype(np.float16): None}
    mt = types.get(arr.dtype)
    if mt is None:
        raise TypeError(f"{what}: dtype {arr.dtype} is not supported (float32/64, int8/32/64, uint8)")
    return mt


def all_reduce_(t: Tensor, op: str = "avg") -> Tensor:
    """Sum (op="sum") or mean (op="avg") of `t` over all ranks, in place on every rank."""
    if op not in _OPS:
        raise ValueError(f"all_reduce_: op must be 'avg' or 'sum', got {op!r}")
    if _STATE["gpu_comm"] is not None and isinstance(t, Tensor) and not str(t.device).startswith("cpu"):
        if op == "avg" and np.dtype(t.dtype).kind != "f":   # NCCL / RCCL on the device buffer
            raise TypeError(f"all_reduce_: op='avg' needs a float tensor, got {t.dtype}")
        _STATE["gpu_comm"].all_reduce_(t, op == "avg")
        return t
    host, copied = _host_view(t, "all_reduce_")
    if op == "avg" and host.dtype.kind != "f":
        raise TypeError(f"all_reduce_: op='avg' needs a float tensor, got {host.dtype}")
    buf = [host, _mpi_type(host, "all_reduce_")]
    if world_size() > 1:
        req = _call("MPI_Iallreduce", _comm().Iallreduce, _mpi().IN_PLACE, buf, _mpi().SUM)
        wait([req], "all_reduce_ (MPI_Iallreduce)")
    if op == "avg":
        host *= host.dtype.type(1.0 / world_size())
    if copied:
        _write_back(t, host)
    return t


def broadcast_(t: Tensor, root: int = 0) -> Tensor:
    """Rank `root`'s `t` copied into `t` on every rank (shapes and dtypes must agree)."""
    if not isinstance(root, int) or not 0 <= root < max(1, world_size()):
        raise ValueError(f"broadcast_: root must be a rank in 0..{world_size() - 1}, got {root!r}")
    if _STATE["gpu_comm"] is not None and isinstance(t, Tensor) and not str(t.device).startswith("cpu"):
        _STATE["gpu_comm"].broadcast_(t, root)
        return t
    host, copied = _host_view(t, "broadcast_")
    if world_size() > 1:
        req = _call("MPI_Ibcast", _comm().Ibcast, [host, _mpi_type(host, "broadcast_")], root)
        wait([req], "broadcast_ (MPI_Ibcast)")
    if copied:
        _write_back(t, host)
    return t


def barrier() -> None:
    if world_size() > 1:
        wait([_call("MPI_Ibarrier", _comm().Ibarrier)], "barrier (MPI_Ibarrier)")


def allreduce_values(values: list[float]) -> list[float]:
    """Element-wise sums of a few Python numbers over all ranks (logs: loss sums, counts)."""
    arr = np.asarray(values, dtype=np.float64)
    if world_size() > 1:
        req = _call("MPI_Iallreduce", _comm().Iallreduce, _mpi().IN_PLACE, arr, _mpi().SUM)
        wait([req], "allreduce_values (MPI_Iallreduce)")
    return arr.tolist()


def check_consistent(what: str, text: str) -> None:
    """Refuse to go on when `text` (a version, a model spec, a weight hash) differs between
    ranks, naming the first rank that differs from rank 0."""
    if world_size() <= 1:
        return
    digest = hashlib.sha256(text.encode()).hexdigest()
    all_digests = _call("MPI_Allgather", _comm().allgather, digest)
    bad = [r for r, d in enumerate(all_digests) if d != all_digests[0]]
    if bad:
        raise DistributedError(f"ranks disagree on {what}: rank {bad[0]} differs from rank 0 "
                               f"(ranks {bad} of {world_size()})")


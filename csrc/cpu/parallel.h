// hipgrad's own CPU thread pool: the parallel regions of every CPU kernel run here.
//
// A region is a number of tasks; the calling thread and the pool's workers claim them one at a
// time from a shared counter, so whoever runs does the work: a worker the OS has not scheduled
// yet (a busy neighbour process holds its core) simply finds nothing left, and the caller never
// waits for a thread that has not started. The caller waits only for tasks already running on a
// worker, and on a quiet machine it waits awake (spinning up to about two of its own tasks'
// time): a futex wake-up of the caller costs more than most tasks. Workers spin a short while after a region (back-to-back regions of a training step
// find them awake), then sleep on a futex, so an idle pool takes no CPU from anyone.
//
// The pool measures each region: the time the caller spent waiting for a worker's last task
// after finishing its own share, and the time the caller itself sat descheduled while working
// (its thread CPU clock against the wall clock). Either long against the work means the machine
// has fewer free cores than threads: a worker was descheduled mid-task, or waking it took the
// caller's core. After a few such regions the pool runs regions on the caller alone, with no spinning, then probes two
// threads again after a back-off that doubles while the contention lasts. OpenBLAS runs on one
// thread per call; gemm_blas splits a large product into blocks over this pool, so both share
// one set of threads and one measurement. set_num_threads stays the upper bound; by default the bound is the CPUs this process may
// use (affinity mask, cgroup CPU quota, OMP_NUM_THREADS when set).
#pragma once
#include <cstdint>
#include <type_traits>

namespace hg::cpu {

// Threads a region with `units` independent pieces of work and about `work` elementary
// operations should ask for: 1 below `min_work` (a second thread costs more than it saves), inside
// another region (nested regions run on the calling thread), or while the pool has found that it
// cannot get its cores; else min(num_threads(), units).
int region_threads(double work, double min_work, int64_t units);

// num_threads(), or 1 inside a region or while the pool has found it cannot get its cores: what a
// kernel that plans its own split (one image per thread, say) should plan for.
int available_threads();

// Inside a region (on the caller or a worker thread).
bool in_parallel();
// The participant index of the calling thread in the current region: 0 for the caller,
// 1 ... threads - 1 for workers; per-participant scratch is indexed by it.
int parallel_slot();

using TaskFn = void (*)(void* ctx, int64_t task);
// Runs fn(ctx, t) for every t in [0, tasks) on at most `threads` participants (tasks claimed one
// at a time). The first exception thrown by a task stops the claiming and is rethrown here once
// every running task has returned. threads <= 1, one task, a nested call, or another thread's
// region in progress: runs on the calling thread.
void parallel_run(int64_t tasks, int threads, TaskFn fn, void* ctx);

// f(task) for task in [0, tasks).
template <class F>
void parallel_tasks(int64_t tasks, int threads, F&& f) {
  using Fn = std::remove_reference_t<F>;
  parallel_run(tasks, threads, [](void* c, int64_t t) { (*static_cast<Fn*>(c))(t); },
               const_cast<void*>(static_cast<const void*>(&f)));
}

// Splits `blocks` units into ranges for parallel_range: start[0] = 0 < start[1] < ... <
// start[tasks] = blocks; returns tasks (at most kRangeTasksMax). Up to 8 threads the ranges shrink
// (each about 1/(2 threads) of what is left, down to 1/(16 threads) of the whole), so a thread
// that joins late or falls behind leaves only a short range for the others to wait on; above 8,
// 4 equal ranges per thread.
constexpr int64_t kRangeTasksMax = 256;
int64_t range_split(int64_t blocks, int threads, int64_t* start);

// f(begin, end) over [0, n) split as range_split says (boundaries multiples of `align`), the
// ranges claimed one at a time by whichever thread is free.
template <class F>
void parallel_range(int64_t n, int threads, F&& f, int64_t align = 1) {
  if (n <= 0) return;
  const int64_t blocks = (n + align - 1) / align;
  if (threads <= 1 || blocks <= 1) return f(int64_t(0), n);
  int64_t start[kRangeTasksMax + 1];
  const int64_t tasks = range_split(blocks, threads, start);
  if (tasks <= 1) return f(int64_t(0), n);
  parallel_tasks(tasks, threads, [&](int64_t t) {
    const int64_t b = start[t] * align, e = start[t + 1] * align;
    f(b, e < n ? e : n);
  });
}

// Every index of [0, n): f(i), ranges as parallel_range.
template <class F>
void parallel_for(int64_t n, int threads, F&& f) {
  parallel_range(n, threads, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) f(i);
  });
}

// Before a call into OpenBLAS: sets OpenBLAS to one thread (once; gemm_blas threads it).
void before_blas_call();

// The pool's figures since it started (hipgrad._C._thread_pool_stats).
struct PoolStats {
  int64_t regions = 0, serial_regions = 0, stalled_regions = 0, degradations = 0;
  int64_t worker_tasks = 0, caller_tasks = 0, caller_sleeps = 0;
  // Multi-threaded regions: the caller working (of which descheduled), then waiting for workers.
  double busy_ms = 0, off_cpu_ms = 0, stall_ms = 0;
  int threads_now = 0, workers = 0, default_threads = 0;
  double spin_us = 0;      // the wait policy's spin
  double spin_now_us = 0;  // what idle workers spin now (adapted to the gaps between regions)
  bool degraded = false;
  const char* spin_source = "";
};
PoolStats pool_stats();

}  // namespace hg::cpu

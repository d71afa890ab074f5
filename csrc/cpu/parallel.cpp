// The CPU thread pool (parallel.h): task claiming, the workers' spin-then-futex wait, the
// measured fall-back to one thread under contention, and the default thread count.
#include "parallel.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "../core/checks.h"
#include "cpu_kernels.h"

extern "C" void scipy_openblas_set_num_threads(int);

namespace hg::cpu {

namespace {

using Clock = std::chrono::steady_clock;

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// This thread's CPU time: against the wall clock it tells how long the thread sat descheduled.
inline int64_t thread_cpu_ns() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

void futex_wait(std::atomic<uint32_t>* word, uint32_t expected) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr,
          nullptr, 0);
}
void futex_wake(std::atomic<uint32_t>* word, int count) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, count, nullptr,
          nullptr, 0);
}

// ---- Thread counts ---------------------------------------------------------------------------

// CPUs in this process's affinity mask.
int affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return int(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
  return std::max(1, CPU_COUNT(&set));
}

// The cgroup's CPU quota rounded up (v2 cpu.max, v1 cfs quota/period); 0 when unlimited.
int cgroup_cpus() {
  double quota = -1, period = -1;
  if (FILE* f = std::fopen("/sys/fs/cgroup/cpu.max", "r")) {
    char q[32] = {0};
    if (std::fscanf(f, "%31s %lf", q, &period) == 2 && std::strcmp(q, "max") != 0)
      quota = std::atof(q);
    std::fclose(f);
  } else if (FILE* g = std::fopen("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "r")) {
    if (std::fscanf(g, "%lf", &quota) != 1) quota = -1;
    std::fclose(g);
    if (FILE* h = std::fopen("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "r")) {
      if (std::fscanf(h, "%lf", &period) != 1) period = -1;
      std::fclose(h);
    }
  }
  if (quota <= 0 || period <= 0) return 0;
  return std::max(1, int(std::ceil(quota / period)));
}

// OMP_NUM_THREADS's first entry when the user set one, else 0.
int omp_num_threads_env() {
  const char* s = std::getenv("OMP_NUM_THREADS");
  if (!s) return 0;
  char* end = nullptr;
  const long v = std::strtol(s, &end, 10);
  return end != s && v >= 1 && v <= 4096 ? int(v) : 0;
}

int compute_default_threads() {
  int n = affinity_cpus();
  if (const int q = cgroup_cpus(); q > 0) n = std::min(n, q);
  if (const int e = omp_num_threads_env(); e > 0) n = e;
  return std::max(1, n);
}

int default_threads() {
  static const int n = compute_default_threads();
  return n;
}

// The workers' spin after a region, in microseconds: the user's explicit OpenMP wait settings
// are honoured for this pool too (OMP_WAIT_POLICY=passive: none; active: 2 ms; GOMP_SPINCOUNT:
// its count at ~1 ns a spin), else 50 us: long enough to bridge the Python between two kernels
// of a step, short against a neighbour's time slice.
struct SpinPolicy {
  double us;
  const char* source;
};
SpinPolicy compute_spin_policy() {
  if (const char* c = std::getenv("GOMP_SPINCOUNT")) {
    std::string s(c);
    if (s == "infinite" || s == "infinity") return {2000.0, "GOMP_SPINCOUNT"};
    char* end = nullptr;
    const double v = std::strtod(c, &end);
    if (end != c && v >= 0) return {std::min(v / 1000.0, 2000.0), "GOMP_SPINCOUNT"};
  }
  if (const char* p = std::getenv("OMP_WAIT_POLICY")) {
    std::string s(p);
    for (char& ch : s) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    if (s == "passive") return {0.0, "OMP_WAIT_POLICY"};
    if (s == "active") return {2000.0, "OMP_WAIT_POLICY"};
  }
  return {50.0, "default"};
}

// ---- The pool --------------------------------------------------------------------------------

// The longest the caller stays awake waiting for a worker's last task (see Pool::run).
constexpr int64_t kCallerWaitMaxNs = 300'000;
// The longest idle workers spin when the regions come back-to-back on a quiet machine (Pool::run).
constexpr int64_t kAdaptiveSpinMaxNs = 1'000'000;

thread_local int t_depth = 0;  // > 0 inside a region
thread_local int t_slot = 0;

struct Pool {
  // The job word: (generation << 1) | open. Workers wait on it (futex) for a new open job.
  std::atomic<uint32_t> job{0};
  std::atomic<uint32_t> active{0};  // workers inside the current job (joined, not yet left)
  std::atomic<uint32_t> sleepers{0};
  std::atomic<uint32_t> caller_sleeping{0};
  std::atomic<bool> nap{false};  // spinners go to sleep now (the pool fell back to one thread)
  std::atomic<int> invited{0};   // workers [0, invited) may join the current job
  std::atomic<int> next_slot{1};
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> worker_tasks{0};
  int64_t tasks = 0;
  TaskFn fn = nullptr;
  void* ctx = nullptr;
  std::atomic<bool> failed{false};
  std::mutex error_mu;
  std::exception_ptr error;

  std::mutex region_mu;  // one region at a time; a second caller runs its region alone
  std::vector<std::thread> workers;
  SpinPolicy spin = compute_spin_policy();
  std::atomic<int64_t> spin_ns{int64_t(spin.us * 1000)};

  // The gap between one region's end and the next one's start, as recently seen (caller side).
  int64_t last_end_ns = 0, gap_ns = 0;

  // Contention measurement (caller side, under region_mu).
  uint32_t history = 0;  // bit i: the i-th last multi-threaded region stalled
  std::atomic<bool> degraded{false};
  std::atomic<int64_t> degraded_until{0};
  bool probing = false;
  int64_t backoff_ns = 20'000'000, probe_left = 0;

  std::atomic<int64_t> regions{0}, serial_regions{0}, stalled{0}, degradations{0}, caller_tasks{0};
  std::atomic<int64_t> busy_ns_total{0}, stall_ns_total{0}, off_cpu_ns_total{0}, caller_sleeps{0};

  // Runs tasks until none is left; returns how many this thread ran.
  int64_t run_tasks(int slot) {
    const int64_t n = tasks;
    int64_t done = 0;
    for (;;) {
      const int64_t t = next.fetch_add(1, std::memory_order_relaxed);
      if (t >= n) break;
      try {
        fn(ctx, t);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (!error) error = std::current_exception();
        failed.store(true);
        next.store(n);
      }
      ++done;
    }
    (slot == 0 ? caller_tasks : worker_tasks).fetch_add(done, std::memory_order_relaxed);
    return done;
  }

  void worker_main(int index) {
    t_depth = 1;
    uint32_t last = job.load();
    for (;;) {
      // Wait for the job word to change: spin (unless told to nap), then sleep.
      const int64_t spin_until = nap.load() ? 0 : now_ns() + spin_ns.load(std::memory_order_relaxed);
      for (int i = 0; job.load(std::memory_order_acquire) == last; ++i) {
        if ((i & 63) == 0 && (nap.load(std::memory_order_relaxed) || now_ns() >= spin_until)) {
          sleepers.fetch_add(1);
          if (job.load() == last) futex_wait(&job, last);
          sleepers.fetch_sub(1);
          i = 0;
          continue;
        }
        cpu_relax();
      }
      last = job.load();
      if (!(last & 1u) || index >= invited.load()) continue;
      active.fetch_add(1);
      if (job.load() == last) {  // still the job we saw: its fields are valid until we leave
        t_slot = next_slot.fetch_add(1);
        run_tasks(t_slot);
        t_slot = 0;
      }
      if (active.fetch_sub(1) == 1 && caller_sleeping.load()) futex_wake(&active, 1);
    }
  }

  // Workers [0, count) exist afterwards, or as many as the system let us start.
  int ensure_workers(int count) {
    try {
      while (int(workers.size()) < count) {
        const int index = int(workers.size());
        workers.emplace_back([this, index] { worker_main(index); });
        workers.back().detach();
      }
    } catch (const std::system_error&) {  // out of threads: run with the ones there are
    }
    return std::min(count, int(workers.size()));
  }

  // After a multi-threaded region. busy: wall time until the caller finished its own share;
  // off_cpu: the part of it the caller spent descheduled (waking a worker on a machine with no
  // free core puts the worker on the caller's core, or a neighbour takes it); stall: the time it
  // then waited for workers' running tasks. Either long against the work means the region was
  // slower than the caller alone would have been.
  void record(int64_t busy_ns, int64_t off_cpu_ns, int64_t stall_ns) {
    busy_ns_total.fetch_add(busy_ns, std::memory_order_relaxed);
    stall_ns_total.fetch_add(stall_ns, std::memory_order_relaxed);
    off_cpu_ns_total.fetch_add(off_cpu_ns, std::memory_order_relaxed);
    const bool bad = stall_ns > busy_ns + 50'000 || off_cpu_ns > busy_ns / 2 + 50'000;
    if (bad) stalled.fetch_add(1, std::memory_order_relaxed);
    history = (history << 1) | (bad ? 1u : 0u);
    if (probing) {
      if (bad) return degrade(std::min<int64_t>(backoff_ns * 2, 2'000'000'000));
      if (--probe_left <= 0) probing = false, backoff_ns = 20'000'000;
      return;
    }
    if (__builtin_popcount(history & 0xffu) >= 3) degrade(backoff_ns);
  }

  void degrade(int64_t backoff) {
    probing = false, history = 0;
    backoff_ns = backoff;
    degraded_until.store(now_ns() + backoff_ns);
    degraded.store(true);
    degradations.fetch_add(1, std::memory_order_relaxed);
    spin_ns.store(0);
    nap.store(true);
    futex_wake(&job, INT_MAX);  // spinners see nap and sleep
  }

  // Threads available now (caller side): 1 while degraded; past the back-off, probe again.
  int cap() {
    if (!degraded) return INT_MAX;
    if (now_ns() < degraded_until.load()) return 1;
    degraded.store(false), probing = true, probe_left = 16;
    spin_ns.store(int64_t(spin.us * 1000));
    return INT_MAX;
  }

  // Before a region: how long idle workers spin after it. With no wait policy set by the user,
  // on a quiet machine (no stalled region among the last 8, not probing) long enough to bridge
  // the recent gaps between regions, up to 1 ms: a training step's regions are often more than
  // 50 us apart (Python runs between them), and a worker woken from its futex arrives 50-100 us
  // late on a VM, one late start per gap. Gaps over 1 ms (the process does something else) halve
  // the estimate, back towards the 50 us default.
  void adapt_spin(int64_t t0) {
    if (std::strcmp(spin.source, "default") != 0) return;
    const int64_t gap = last_end_ns > 0 ? t0 - last_end_ns : kAdaptiveSpinMaxNs + 1;
    gap_ns = gap <= kAdaptiveSpinMaxNs ? std::max(gap, gap_ns - gap_ns / 8) : gap_ns / 2;
    const int64_t base = int64_t(spin.us * 1000);
    const bool quiet = !probing && (history & 0xffu) == 0;
    spin_ns.store(quiet ? std::clamp<int64_t>(gap_ns + gap_ns / 4, base, kAdaptiveSpinMaxNs) : base,
                  std::memory_order_relaxed);
  }

  void run(int64_t n, int threads, TaskFn f, void* c) {
    const int64_t t0 = now_ns(), c0 = thread_cpu_ns();
    adapt_spin(t0);
    tasks = n, fn = f, ctx = c;
    next.store(0), next_slot.store(1), failed.store(false);
    error = nullptr;
    const int helpers = ensure_workers(threads - 1);
    invited.store(helpers);
    nap.store(false);
    const uint32_t open = ((job.load() >> 1) + 1) << 1 | 1u;
    job.store(open);
    // Uninvited workers may sleep too (a lower thread count than before): then wake them all,
    // else a wake-up could go to one that may not join.
    if (sleepers.load() > 0)
      futex_wake(&job, int(workers.size()) > helpers ? INT_MAX : helpers);
    t_depth = 1, t_slot = 0;
    const int64_t mine = run_tasks(0);
    t_depth = 0;
    job.store(open & ~1u);  // closed: no worker joins any more
    const int64_t t1 = now_ns(), c1 = thread_cpu_ns();
    if (active.load() != 0) {
      // A running worker ends its task within about one task's time (the caller's mean): on a
      // quiet machine wait that long spinning, since a futex wake-up of a sleeping caller costs
      // 50-100 us on a VM, more than most tasks. After a stalled region among the last 8, while
      // probing after a fall-back, or under a passive wait policy, 20 us only: then the worker
      // may be waiting for a core, and the caller's sleep gives it this one.
      const int64_t task_ns = (t1 - t0) / std::max<int64_t>(1, mine);
      const bool quiet = !probing && spin.us > 0 && (history & 0xffu) == 0;
      const int64_t budget = quiet ? std::clamp<int64_t>(2 * task_ns, 20'000, kCallerWaitMaxNs) : 20'000;
      const int64_t spin_until = t1 + budget;
      while (active.load() != 0 && now_ns() < spin_until)
        for (int i = 0; i < 32; ++i) cpu_relax();
      if (active.load() != 0) {
        // Sleep, so the OS can move a descheduled worker onto this core.
        caller_sleeping.store(1);
        caller_sleeps.fetch_add(1, std::memory_order_relaxed);
        for (uint32_t v; (v = active.load()) != 0;) futex_wait(&active, v);
        caller_sleeping.store(0);
      }
    }
    const int64_t t2 = now_ns();
    last_end_ns = t2;
    regions.fetch_add(1, std::memory_order_relaxed);
    record(t1 - t0, std::max<int64_t>(0, (t1 - t0) - (c1 - c0)), t2 - t1);
    if (failed.load()) std::rethrow_exception(error);
  }
};

Pool* g_pool = nullptr;
std::once_flag g_pool_once;

void reset_after_fork() { g_pool = new Pool(); }  // the child has none of the parent's workers

Pool& pool() {
  std::call_once(g_pool_once, [] {
    g_pool = new Pool();  // never destroyed: detached workers may still wait on it at exit
    pthread_atfork(nullptr, nullptr, &reset_after_fork);
  });
  return *g_pool;
}

int g_threads = 0;  // set_num_threads; 0: the default

void run_serial(int64_t n, TaskFn fn, void* ctx) {
  const int saved = t_slot;
  t_slot = 0;
  try {
    for (int64_t t = 0; t < n; ++t) fn(ctx, t);
  } catch (...) {
    t_slot = saved;
    throw;
  }
  t_slot = saved;
}

}  // namespace

int max_num_threads() { return std::max(64, 4 * affinity_cpus()); }

int num_threads() { return g_threads > 0 ? g_threads : default_threads(); }

void set_num_threads(int64_t n) {
  HG_REQUIRE(n >= 1, "set_num_threads: n must be >= 1, got ", n);
  HG_REQUIRE(n <= max_num_threads(), "set_num_threads: n must be at most ", max_num_threads(),
             " (4 x this machine's ", affinity_cpus(), " hardware threads, at least 64), got ", n);
  g_threads = int(n);
}

bool in_parallel() { return t_depth > 0; }

int available_threads() {
  if (t_depth > 0) return 1;
  Pool& p = pool();
  return p.degraded.load() && now_ns() < p.degraded_until.load() ? 1 : num_threads();
}
int parallel_slot() { return t_slot; }

int region_threads(double work, double min_work, int64_t units) {
  if (work < min_work || units <= 1 || t_depth > 0) return 1;
  Pool& p = pool();
  const int cap = p.degraded.load() && now_ns() < p.degraded_until.load() ? 1 : INT_MAX;
  return int(std::max<int64_t>(1, std::min<int64_t>(std::min(num_threads(), cap), units)));
}

void parallel_run(int64_t tasks, int threads, TaskFn fn, void* ctx) {
  if (tasks <= 0) return;
  Pool& p = pool();
  if (threads <= 1 || tasks == 1 || t_depth > 0) {
    p.serial_regions.fetch_add(1, std::memory_order_relaxed);
    return run_serial(tasks, fn, ctx);
  }
  std::unique_lock<std::mutex> lock(p.region_mu, std::try_to_lock);
  const int n = lock.owns_lock() ? int(std::min<int64_t>({int64_t(threads), tasks, int64_t(p.cap())})) : 1;
  if (n <= 1) {
    p.serial_regions.fetch_add(1, std::memory_order_relaxed);
    return run_serial(tasks, fn, ctx);
  }
  p.run(tasks, n, fn, ctx);
}

int64_t range_split(int64_t blocks, int threads, int64_t* start) {
  start[0] = 0;
  if (threads > 8 || blocks <= 4 * int64_t(threads)) {
    const int64_t tasks = std::min<int64_t>({blocks, 4 * int64_t(threads), kRangeTasksMax});
    for (int64_t t = 1; t <= tasks; ++t) start[t] = blocks * t / tasks;
    return tasks;
  }
  const int64_t share = 2 * int64_t(threads), smallest = std::max<int64_t>(1, blocks / (8 * share));
  int64_t t = 0;
  for (int64_t left = blocks; left > 0 && t < kRangeTasksMax - 1; ++t) {
    const int64_t len = std::min(left, std::max(smallest, (left + share - 1) / share));
    start[t + 1] = start[t] + len;
    left -= len;
  }
  if (start[t] < blocks) start[++t] = blocks;
  return t;
}

void before_blas_call() {
  // OpenBLAS's own pool would split each call statically and busy-wait for its workers: it runs
  // on the calling thread, and gemm_blas spreads blocks over this pool instead.
  static std::once_flag once;
  std::call_once(once, [] { scipy_openblas_set_num_threads(1); });
}

PoolStats pool_stats() {
  Pool& p = pool();
  PoolStats s;
  s.regions = p.regions.load();
  s.serial_regions = p.serial_regions.load();
  s.stalled_regions = p.stalled.load();
  s.degradations = p.degradations.load();
  s.worker_tasks = p.worker_tasks.load();
  s.caller_tasks = p.caller_tasks.load();
  s.busy_ms = p.busy_ns_total.load() * 1e-6;
  s.stall_ms = p.stall_ns_total.load() * 1e-6;
  s.off_cpu_ms = p.off_cpu_ns_total.load() * 1e-6;
  s.caller_sleeps = p.caller_sleeps.load();
  s.degraded = p.degraded.load() && now_ns() < p.degraded_until.load();
  s.threads_now = s.degraded ? 1 : num_threads();
  s.workers = int(p.workers.size());
  s.default_threads = default_threads();
  s.spin_us = p.spin.us;
  s.spin_now_us = p.spin_ns.load() * 1e-3;
  s.spin_source = p.spin.source;
  return s;
}

}  // namespace hg::cpu

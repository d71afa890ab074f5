// The CPU thread pool's figures and a test entry point that exercises a region from Python.
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "../core/checks.h"
#include "../cpu/parallel.h"
#include "bind.h"

namespace hg {

namespace {

// Visits [0, n) with parallel_for on `threads`; returns per-index visit counts (nested > 0: an
// inner region of `nested` indexes inside each outer index, counts per (i, j)), the highest
// participant slot seen, and whether inner regions ran as nested (on one thread).
py::tuple parallel_test(int64_t n, int threads, int64_t nested, int64_t throw_at,
                        double task_us) {
  HG_REQUIRE(n >= 0 && nested >= 0, "_parallel_test: n and nested must be >= 0");
  HG_REQUIRE(threads >= 1, "_parallel_test: threads must be >= 1");
  const int64_t inner = nested > 0 ? nested : 1;
  std::vector<std::atomic<int32_t>> counts(size_t(n * inner));
  for (auto& c : counts) c.store(0);
  std::atomic<int> max_slot{0}, nested_parallel{0};
  {
    py::gil_scoped_release release;
    cpu::parallel_for(n, threads, [&](int64_t i) {
      int s = cpu::parallel_slot(), m = max_slot.load();
      while (s > m && !max_slot.compare_exchange_weak(m, s)) {}
      if (task_us > 0) std::this_thread::sleep_for(std::chrono::duration<double, std::micro>(task_us));
      HG_REQUIRE(i != throw_at, "_parallel_test: task ", i, " failed on purpose");
      if (nested > 0) {
        cpu::parallel_for(nested, threads, [&](int64_t j) {
          if (cpu::parallel_slot() != 0) nested_parallel.fetch_add(1);
          counts[size_t(i * inner + j)].fetch_add(1);
        });
      } else {
        counts[size_t(i)].fetch_add(1);
      }
    });
  }
  py::array_t<int32_t> out(std::vector<py::ssize_t>{py::ssize_t(n), py::ssize_t(inner)});
  auto v = out.mutable_unchecked<2>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < inner; ++j) v(i, j) = counts[size_t(i * inner + j)].load();
  return py::make_tuple(out, max_slot.load(), nested_parallel.load());
}

}  // namespace

void bind_parallel(py::module_& m) {
  m.def("_parallel_test", &parallel_test, py::arg("n"), py::arg("threads"),
        py::arg("nested") = 0, py::arg("throw_at") = -1, py::arg("task_us") = 0.0,
        "Test hook: visit counts of a parallel_for over n indexes (see csrc/bindings/parallel.cpp).");
  m.def("_range_split", [](int64_t blocks, int threads) {
    HG_REQUIRE(blocks >= 1 && threads >= 2, "_range_split: blocks >= 1 and threads >= 2");
    std::vector<int64_t> start(size_t(cpu::kRangeTasksMax + 1));
    start.resize(size_t(cpu::range_split(blocks, threads, start.data()) + 1));
    return start;
  }, py::arg("blocks"), py::arg("threads"),
        "Test hook: the range boundaries parallel_range uses (cpu::range_split).");
  m.def("_thread_pool_stats", [] {
    const cpu::PoolStats s = cpu::pool_stats();
    py::dict d;
    d["regions"] = s.regions;
    d["serial_regions"] = s.serial_regions;
    d["stalled_regions"] = s.stalled_regions;
    d["degradations"] = s.degradations;
    d["worker_tasks"] = s.worker_tasks;
    d["caller_tasks"] = s.caller_tasks;
    d["caller_sleeps"] = s.caller_sleeps;
    d["busy_ms"] = s.busy_ms;
    d["stall_ms"] = s.stall_ms;
    d["off_cpu_ms"] = s.off_cpu_ms;
    d["threads_now"] = s.threads_now;
    d["workers"] = s.workers;
    d["default_threads"] = s.default_threads;
    d["degraded"] = s.degraded;
    d["spin_us"] = s.spin_us;
    d["spin_now_us"] = s.spin_now_us;
    d["spin_source"] = std::string(s.spin_source);
    return d;
  }, "The CPU thread pool's counters and current state (csrc/cpu/parallel.h).");
}

}  // namespace hg

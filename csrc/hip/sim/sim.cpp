// The simulated HIP device (HIPGRAD_GPU=sim): runtime calls, device memory and the kernel
// scheduler. See sim_device.h for the kernel-side names and README "The simulated device".
//
// Execution. A launch runs its blocks one after another on the calling host thread. A block's
// threads are fibers (a small x86-64 context switch below; callee-saved registers, MXCSR and the
// x87 control word). Thread t starts on a free stack and runs until it finishes, or until it
// waits at __syncthreads() or a warp operation; only a thread that waits keeps its stack, so a
// block without barriers runs its threads as a plain loop on one stack. Waiting threads are then
// resumed round-robin until all finish. A pass in which no thread arrives anywhere, finishes or
// is released is a deadlock (e.g. a __syncthreads() that only part of the block reaches) and
// fails the launch.
//   __syncthreads / __syncthreads_or|and|count: all live threads of the block (threads that
//     returned no longer count, as on AMD hardware).
//   shuffles and votes: the live lanes of the caller's wavefront only (warp_size() lanes,
//     numbered by the linear thread index); a lane that reads from a lane that has returned gets
//     all-ones bytes (NaN for floats), so a reduction over exited lanes shows up in results.
// Memory. hipMalloc returns pages of a reserved address range with an inaccessible guard page on
// each side; the allocation ends at the guard page (sizes rounded up to 16 bytes), so a kernel
// reading or writing past the end faults at once, and the fault becomes the launch's error
// naming the kernel, the thread, and the allocation and offset it missed (SIGSEGV is caught only
// while a kernel runs on that thread). Shared memory is a per-host-thread arena: the dynamic part
// (launch's shmem bytes) ends at a guard page, the static __shared__ arrays sit below it; a block
// that declares more than 64 KiB fails. With HIPGRAD_SIM_CHECK=1 (default) every shared-memory
// byte is poisoned (0xFF) before each block, the bytes of each allocation between the requested
// size and the end are checked for writes, and the device memory hipMemcpy/hipMemset touch must
// lie inside one allocation.
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "../../core/build_facts.h"
#include "sim_device.h"

int warpSize = 64;

struct ihipStream_t {
  int id;
};
struct ihipEvent_t {
  double ms = 0.0;
  bool recorded = false;
};

namespace hg::sim {

thread_local ThreadState* tls_thread __attribute__((tls_model("initial-exec"))) = nullptr;

namespace {

constexpr size_t kPage = 4096;
constexpr size_t kSharedLimit = 65536;  // LDS per workgroup on gfx9/CDNA/RDNA
constexpr size_t kStackBytes = 256 * 1024;
constexpr size_t kTotalMemory = size_t(16) << 30;
constexpr size_t kReserve = size_t(1) << 40;  // address space for device allocations

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// ---- errors ---------------------------------------------------------------------------------------
thread_local hipError_t tls_last_error = hipSuccess;
thread_local std::string tls_error_detail;

hipError_t set_error(hipError_t e, std::string detail) {
  tls_last_error = e;
  tls_error_detail = std::move(detail);
  return e;
}

// ---- device memory --------------------------------------------------------------------------------
struct Allocation {
  uintptr_t base;      // the first usable page
  size_t pages;        // usable pages (guards not counted)
  uintptr_t ptr;       // what hipMalloc returned
  size_t bytes;        // what was asked for
};

class DeviceMemory {
 public:
  hipError_t allocate(void** out, size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!reserve_) {
      void* r = mmap(nullptr, kReserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (r == MAP_FAILED) return hipErrorOutOfMemory;
      reserve_ = reinterpret_cast<uintptr_t>(r);
      next_ = reserve_ + kPage;
    }
    const size_t rounded = (std::max<size_t>(bytes, 1) + 15) / 16 * 16;
    const size_t pages = (rounded + kPage - 1) / kPage;
    if (used_ + pages * kPage > kTotalMemory) return hipErrorOutOfMemory;
    uintptr_t base = 0;
    auto it = free_.find(pages);
    if (it != free_.end()) {
      base = it->second;
      free_.erase(it);
    } else {
      if (next_ + (pages + 1) * kPage > reserve_ + kReserve) return hipErrorOutOfMemory;
      base = next_;
      next_ += (pages + 1) * kPage;  // one guard page between neighbours
    }
    if (mprotect(reinterpret_cast<void*>(base), pages * kPage, PROT_READ | PROT_WRITE) != 0)
      return hipErrorOutOfMemory;
    const uintptr_t ptr = base + pages * kPage - rounded;
    // Slack before ptr and between bytes and rounded: a pattern checked after each launch.
    std::memset(reinterpret_cast<void*>(base), kCanary, ptr - base);
    std::memset(reinterpret_cast<void*>(ptr + bytes), kCanary, rounded - bytes);
    live_[ptr] = Allocation{base, pages, ptr, bytes};
    used_ += pages * kPage;
    *out = reinterpret_cast<void*>(ptr);
    return hipSuccess;
  }

  hipError_t release(void* p) {
    if (p == nullptr) return hipSuccess;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(reinterpret_cast<uintptr_t>(p));
    if (it == live_.end()) return hipErrorInvalidValue;
    const Allocation a = it->second;
    live_.erase(it);
    madvise(reinterpret_cast<void*>(a.base), a.pages * kPage, MADV_DONTNEED);
    mprotect(reinterpret_cast<void*>(a.base), a.pages * kPage, PROT_NONE);
    free_.emplace(a.pages, a.base);
    used_ -= a.pages * kPage;
    return hipSuccess;
  }

  size_t used() {
    std::lock_guard<std::mutex> lock(mu_);
    return used_;
  }

  bool in_reserve(uintptr_t p) const { return reserve_ && p >= reserve_ && p < reserve_ + kReserve; }

  // The allocation holding [p, p + n); false when none holds all of it.
  bool find(uintptr_t p, size_t n, Allocation* out) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.upper_bound(p);
    if (it == live_.begin()) return false;
    --it;
    if (p + n > it->second.ptr + it->second.bytes) return false;
    *out = it->second;
    return true;
  }

  // Describes an address near the allocations: "offset 4096 of the 4096-byte allocation at 0x...".
  std::string describe(uintptr_t p) {
    std::lock_guard<std::mutex> lock(mu_);
    if (live_.empty()) return "no device allocation is live";
    auto after = live_.upper_bound(p);
    std::string s;
    if (after != live_.begin()) {
      const Allocation& a = std::prev(after)->second;
      if (p >= a.base && p < a.base + (a.pages + 1) * kPage) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "byte offset %lld of the %zu-byte device allocation at %p",
                      (long long)(p - a.ptr), a.bytes, reinterpret_cast<void*>(a.ptr));
        return buf;
      }
    }
    if (after != live_.end() && p + kPage >= after->second.base) {
      const Allocation& a = after->second;
      char buf[160];
      std::snprintf(buf, sizeof buf, "byte offset %lld of the %zu-byte device allocation at %p",
                    (long long)(p - a.ptr), a.bytes, reinterpret_cast<void*>(a.ptr));
      return buf;
    }
    return "no device allocation (a freed block or a wild pointer)";
  }

  // After a launch: the canary bytes around every allocation are intact; else a description.
  std::string check_canaries() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [ptr, a] : live_) {
      const uint8_t* lo = reinterpret_cast<const uint8_t*>(a.base);
      for (uintptr_t q = a.base; q < a.ptr; ++q)
        if (lo[q - a.base] != kCanary) return slack_message(a, q);
      const size_t rounded = a.base + a.pages * kPage - a.ptr;
      const uint8_t* hi = reinterpret_cast<const uint8_t*>(a.ptr);
      for (size_t q = a.bytes; q < rounded; ++q)
        if (hi[q] != kCanary) return slack_message(a, a.ptr + q);
    }
    return "";
  }

 private:
  static constexpr uint8_t kCanary = 0xA5;
  static std::string slack_message(Allocation& a, uintptr_t q) {
    char buf[200];
    std::snprintf(buf, sizeof buf,
                  "a write at byte offset %lld of the %zu-byte device allocation at %p (outside it)",
                  (long long)(q - a.ptr), a.bytes, reinterpret_cast<void*>(a.ptr));
    // repair, so the next launch reports only its own writes
    const uint8_t* lo = reinterpret_cast<const uint8_t*>(a.base);
    (void)lo;
    std::memset(reinterpret_cast<void*>(a.base), kCanary, a.ptr - a.base);
    std::memset(reinterpret_cast<void*>(a.ptr + a.bytes), kCanary,
                a.base + a.pages * kPage - a.ptr - a.bytes);
    return buf;
  }
  std::mutex mu_;
  uintptr_t reserve_ = 0, next_ = 0;
  size_t used_ = 0;
  std::map<uintptr_t, Allocation> live_;
  std::multimap<size_t, uintptr_t> free_;
};

DeviceMemory& memory() {
  static DeviceMemory* m = new DeviceMemory();  // never destroyed: tensors outlive statics
  return *m;
}

// ---- fibers ---------------------------------------------------------------------------------------
extern "C" void hg_sim_switch(void** save_sp, void* new_sp);
asm(R"(
  .text
  .globl hg_sim_switch
  .hidden hg_sim_switch
  .type hg_sim_switch, @function
hg_sim_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size hg_sim_switch, .-hg_sim_switch
)");

struct Stack {
  char* lo = nullptr;  // usable bottom (a guard page lies below)
  char* hi = nullptr;
};

enum class Wait : uint8_t { none, block, warp };

struct Fiber {
  ThreadState ts;
  void* sp = nullptr;
  Stack stack;
  bool done = false;
  Wait wait = Wait::none;
  uint64_t wait_gen = 0;
};

struct WarpSync {
  int live = 0, arrived = 0;
  uint64_t gen = 0;
  uint64_t arrived_mask[2] = {0, 0};
  uint64_t slot[2][64];
};

struct SharedSlot {
  const void* key;
  size_t offset;  // below the dynamic part: address = dyn_base - offset
  size_t bytes;
  const char* name;
};

// Racecheck shadow of one 4-byte word of shared memory: the last plain write in this block.
struct Shadow {
  uint32_t epoch;  // the block's barrier generation + 1 at the write; 0: not written
  uint32_t warp_gen;  // the writer's wavefront's warp-operation generation at the write
  int32_t writer;  // linear thread index
};

// Everything one host thread needs to run blocks.
struct Worker {
  std::vector<Stack> free_stacks;
  std::vector<Fiber> fibers;
  std::vector<int> waiting;
  void* sched_sp = nullptr;
  Fiber* current = nullptr;
  BlockState block;
  const LaunchConfig* cfg = nullptr;
  void (*body)(void*) = nullptr;
  void* closure = nullptr;
  int live = 0, arrived = 0;
  uint64_t gen = 0;
  int counts[2] = {0, 0};
  uint64_t progress = 0;
  std::vector<WarpSync> warps;
  // shared memory
  char* arena = nullptr;      // kSharedLimit * 2 usable bytes, guard page above
  char* dyn_base = nullptr;   // start of the dynamic part
  size_t static_bytes = 0;
  std::vector<SharedSlot> slots;
  std::vector<Shadow> shadow;  // racecheck: one entry per 4 bytes of the arena
  size_t shadow_lo = SIZE_MAX;  // lowest entry written since the last reset
  std::string error;          // set by a failing thread; the launch stops
  sigjmp_buf jmp;
  bool in_kernel = false;
  char* altstack = nullptr;
};

thread_local Worker* tls_worker __attribute__((tls_model("initial-exec"))) = nullptr;
thread_local volatile uintptr_t tls_fault_addr __attribute__((tls_model("initial-exec"))) = 0;
thread_local volatile int tls_fault_sig __attribute__((tls_model("initial-exec"))) = 0;

Stack new_stack() {
  char* m = static_cast<char*>(mmap(nullptr, kStackBytes + kPage, PROT_READ | PROT_WRITE,
                                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  if (m == MAP_FAILED) { std::fprintf(stderr, "hipgrad sim: out of memory for fiber stacks\n"); std::abort(); }
  mprotect(m, kPage, PROT_NONE);
  return Stack{m + kPage, m + kPage + kStackBytes};
}

[[noreturn]] void fail_in_kernel(std::string msg);

[[noreturn]] void fiber_entry() {
  Worker* w = tls_worker;
  Fiber* f = w->current;
  tls_thread = &f->ts;
  w->body(w->closure);
  // the thread returned: it leaves every barrier count
  f->done = true;
  w->live -= 1;
  w->progress += 1;
  if (w->arrived > 0 && w->arrived == w->live) {
    w->arrived = 0;
    w->gen += 1;
  }
  if (!w->warps.empty()) {
    WarpSync& ws = w->warps[f->ts.linear / warpSize];
    ws.live -= 1;
    if (ws.arrived > 0 && ws.arrived == ws.live) {
      ws.arrived = 0;
      ws.gen += 1;
    }
  }
  void* dummy;
  hg_sim_switch(&dummy, w->sched_sp);
  __builtin_unreachable();
}

void* initial_sp(const Stack& s) {
  uintptr_t top = reinterpret_cast<uintptr_t>(s.hi) & ~uintptr_t(15);
  uint64_t* sp = reinterpret_cast<uint64_t*>(top);
  *--sp = 0;                                             // fake return address of fiber_entry
  *--sp = reinterpret_cast<uint64_t>(&fiber_entry);      // hg_sim_switch's ret target
  for (int i = 0; i < 6; ++i) *--sp = 0;                 // rbp rbx r12 r13 r14 r15
  *--sp = uint64_t(0x1F80) | (uint64_t(0x037F) << 32);   // MXCSR, x87 control word
  return sp;
}

// From a fiber: back to the scheduler until resumed.
inline void yield(Worker* w) {
  Fiber* f = w->current;
  hg_sim_switch(&f->sp, w->sched_sp);
  tls_thread = &f->ts;
}

std::string thread_name(const ThreadState& t) {
  char buf[120];
  std::snprintf(buf, sizeof buf, "thread (%u,%u,%u) of block (%u,%u,%u)", t.idx.x, t.idx.y, t.idx.z,
                t.block->idx.x, t.block->idx.y, t.block->idx.z);
  return buf;
}

[[noreturn]] void fail_in_kernel(std::string msg) {
  Worker* w = tls_worker;
  w->error = std::move(msg);
  siglongjmp(w->jmp, 1);
}

void on_fault(int sig, siginfo_t* info, void* ctx);
struct sigaction g_old_segv, g_old_bus;

void install_fault_handler(Worker* w) {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = &on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_old_segv);
    sigaction(SIGBUS, &sa, &g_old_bus);
  });
  if (!w->altstack) {
    const size_t n = 64 * 1024;
    w->altstack = static_cast<char*>(std::malloc(n));
    stack_t ss{};
    ss.ss_sp = w->altstack;
    ss.ss_size = n;
    sigaltstack(&ss, nullptr);
  }
}

void on_fault(int sig, siginfo_t* info, void* ctx) {
  Worker* w = tls_worker;
  if (w != nullptr && w->in_kernel) {
    tls_fault_addr = reinterpret_cast<uintptr_t>(info->si_addr);
    tls_fault_sig = sig;
    siglongjmp(w->jmp, 2);
  }
  // Not ours: hand it to the previous handler (Python's faulthandler, or the default action).
  struct sigaction& old = sig == SIGSEGV ? g_old_segv : g_old_bus;
  if (old.sa_flags & SA_SIGINFO) {
    if (old.sa_sigaction) { old.sa_sigaction(sig, info, ctx); return; }
  } else if (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN) {
    old.sa_handler(sig);
    return;
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

Worker* worker() {
  if (!tls_worker) {
    tls_worker = new Worker();  // one per host thread that launches; kept for the process
    char* m = static_cast<char*>(mmap(nullptr, 2 * kSharedLimit + kPage, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    mprotect(m + 2 * kSharedLimit, kPage, PROT_NONE);
    tls_worker->arena = m;
  }
  return tls_worker;
}

std::string kernel_name(const LaunchConfig& cfg) {
  if (!cfg.site) return "a kernel";
  return std::string("kernel ") + cfg.site->name + " (launched at " + cfg.site->file + ":" +
         std::to_string(cfg.site->line) + ")";
}

}  // namespace

// ---- barriers and warp operations -----------------------------------------------------------------
int barrier_count(int pred) {
  Worker* w = tls_worker;
  const uint64_t g = w->gen;
  const int par = int(g & 1);
  if (w->arrived == 0) w->counts[par] = 0;
  w->counts[par] += pred != 0;
  w->arrived += 1;
  w->progress += 1;
  if (w->arrived == w->live) {
    w->arrived = 0;
    w->gen += 1;
  } else {
    Fiber* f = w->current;
    f->wait = Wait::block;
    while (w->gen == g) yield(w);
    f->wait = Wait::none;
  }
  return w->counts[par];
}

int lane_id() { return tls_thread->linear % warpSize; }

uint64_t warp_exchange(uint64_t value, WarpMode mode, int arg, int width) {
  Worker* w = tls_worker;
  const int linear = tls_thread->linear;
  const int lane = linear % warpSize;
  if (width <= 0 || width > warpSize || (width & (width - 1)) != 0)
    fail_in_kernel("a warp operation with width " + std::to_string(width) +
                   " (must be a power of two up to warpSize " + std::to_string(warpSize) + ")");
  WarpSync& ws = w->warps[linear / warpSize];
  const uint64_t g = ws.gen;
  const int par = int(g & 1);
  if (ws.arrived == 0) ws.arrived_mask[par] = 0;
  ws.slot[par][lane] = value;
  ws.arrived_mask[par] |= uint64_t(1) << lane;
  ws.arrived += 1;
  w->progress += 1;
  if (ws.arrived == ws.live) {
    ws.arrived = 0;
    ws.gen += 1;
  } else {
    Fiber* f = w->current;
    f->wait = Wait::warp;
    while (ws.gen == g) yield(w);
    f->wait = Wait::none;
  }
  const uint64_t present = ws.arrived_mask[par];
  if (mode == kBallot) {
    uint64_t m = 0;
    for (int l = 0; l < warpSize; ++l)
      if ((present >> l & 1) && ws.slot[par][l]) m |= uint64_t(1) << l;
    return m;
  }
  const int seg = lane & ~(width - 1), in = lane & (width - 1);
  int src = lane;
  switch (mode) {
    case kShfl: src = seg + (arg & (width - 1)); break;
    case kShflXor: src = (in ^ arg) < width && (in ^ arg) >= 0 ? seg + (in ^ arg) : lane; break;
    case kShflDown: src = in + arg < width ? lane + arg : lane; break;
    case kShflUp: src = in - arg >= 0 ? lane - arg : lane; break;
    default: break;
  }
  if (!(present >> src & 1)) return ~uint64_t(0);  // the source lane has returned: poison
  return ws.slot[par][src];
}

// ---- shared memory --------------------------------------------------------------------------------
void* shared_static(const void* key, size_t bytes, size_t align, const char* name) {
  Worker* w = tls_worker;
  for (const SharedSlot& s : w->slots)
    if (s.key == key) return w->dyn_base - s.offset;
  size_t off = w->static_bytes + bytes;
  off = (off + align - 1) / align * align;
  const size_t dyn = w->cfg->shmem;
  if (off + dyn > kSharedLimit) {
    fail_in_kernel("__shared__ " + std::string(name) + " (" + std::to_string(bytes) +
                   " bytes) takes the block's shared memory to " + std::to_string(off + dyn) +
                   " bytes (static and dynamic); the limit is " + std::to_string(kSharedLimit));
  }
  w->static_bytes = off;
  w->slots.push_back(SharedSlot{key, off, bytes, name});
  if (checks_on()) std::memset(w->dyn_base - off, 0xFF, bytes);
  return w->dyn_base - off;
}

void* shared_dynamic(size_t align) {
  Worker* w = tls_worker;
  if (reinterpret_cast<uintptr_t>(w->dyn_base) % align != 0)
    fail_in_kernel("extern __shared__ memory is not aligned for its type");
  return w->dyn_base;
}

// ---- launches -------------------------------------------------------------------------------------
namespace {

// HIPGRAD_SIM_ORDER=reverse: each block's threads start, and resume after each barrier, from the
// last to the first, so a shared-memory read that depends on another thread's write without a
// barrier between (a race) sees the poisoned value instead of the write.
bool reverse_order() {
  static const bool on = env("HIPGRAD_SIM_ORDER") == "reverse";
  return on;
}

// HIPGRAD_SIM_COVERAGE=<file>: the launch sites that ran are appended to <file> at exit.
void record_site(const Site* site) {
  static const std::string path = env("HIPGRAD_SIM_COVERAGE");
  if (path.empty() || site == nullptr) return;
  static std::mutex mu;
  static std::map<const Site*, bool>* seen = nullptr;
  std::lock_guard<std::mutex> lock(mu);
  if (!seen) {
    seen = new std::map<const Site*, bool>();
    std::atexit([] {
      FILE* f = std::fopen(path.c_str(), "a");
      if (!f) return;
      std::lock_guard<std::mutex> lock(mu);
      for (auto& [s, ran] : *seen) std::fprintf(f, "%s:%d %s\n", s->file, s->line, s->name);
      std::fclose(f);
    });
  }
  (*seen)[site] = true;
}

void run_block(Worker* w, const uint3& bidx) {
  const LaunchConfig& cfg = *w->cfg;
  const int nx = int(cfg.block.x), ny = int(cfg.block.y), nz = int(cfg.block.z);
  const int n = nx * ny * nz;
  w->block.idx = bidx;
  w->live = n;
  w->arrived = 0;
  w->gen = 0;
  w->progress = 0;
  w->slots.clear();
  w->static_bytes = 0;
  const int nwarps = (n + warpSize - 1) / warpSize;
  w->warps.resize(size_t(nwarps));
  for (int i = 0; i < nwarps; ++i) {
    WarpSync& ws = w->warps[size_t(i)];
    ws.live = std::min(warpSize, n - i * warpSize);
    ws.arrived = 0;
    ws.gen = 0;
  }
  if (checks_on()) {
    // Shared memory no thread wrote reads as 0xFF bytes (NaN): the dynamic part here, each
    // __shared__ array when the block first declares it (shared_static).
    std::memset(w->dyn_base, 0xFF, cfg.shmem);
    if (w->shadow.empty()) w->shadow.resize(2 * kSharedLimit / 4);
    if (w->shadow_lo < w->shadow.size())
      std::memset(&w->shadow[w->shadow_lo], 0, (w->shadow.size() - w->shadow_lo) * sizeof(Shadow));
    w->shadow_lo = SIZE_MAX;
  }
  w->fibers.resize(size_t(n));
  w->waiting.clear();
  Stack spare{};
  const bool reverse = reverse_order();
  for (int i = 0; i < n; ++i) {
    const int t = reverse ? n - 1 - i : i;
    Fiber& f = w->fibers[size_t(t)];
    f.ts.idx = uint3{unsigned(t % nx), unsigned(t / nx % ny), unsigned(t / (nx * ny))};
    f.ts.linear = t;
    f.ts.block = &w->block;
    f.done = false;
    f.wait = Wait::none;
    if (!spare.lo) {
      if (!w->free_stacks.empty()) {
        spare = w->free_stacks.back();
        w->free_stacks.pop_back();
      } else {
        spare = new_stack();
      }
    }
    f.stack = spare;
    f.sp = initial_sp(spare);
    w->current = &f;
    hg_sim_switch(&w->sched_sp, f.sp);
    if (f.done) continue;  // the stack is free again for the next thread
    spare = Stack{};
    w->waiting.push_back(t);
  }
  if (spare.lo) w->free_stacks.push_back(spare);
  while (!w->waiting.empty()) {
    const uint64_t before = w->progress;
    size_t keep = 0;
    for (size_t i = 0; i < w->waiting.size(); ++i) {
      Fiber& f = w->fibers[size_t(w->waiting[i])];
      w->current = &f;
      hg_sim_switch(&w->sched_sp, f.sp);
      if (f.done) w->free_stacks.push_back(f.stack);
      else w->waiting[keep++] = w->waiting[i];
    }
    w->waiting.resize(keep);
    if (!w->waiting.empty() && w->progress == before) {
      int at_block = 0, at_warp = 0;
      for (int t : w->waiting) (w->fibers[size_t(t)].wait == Wait::block ? at_block : at_warp) += 1;
      w->error = "deadlock in block (" + std::to_string(bidx.x) + "," + std::to_string(bidx.y) + "," +
                 std::to_string(bidx.z) + "): " + std::to_string(at_block) +
                 " thread(s) wait at __syncthreads and " + std::to_string(at_warp) +
                 " at a warp operation, and no other thread can reach them (a barrier inside a "
                 "branch not every thread takes?)";
      w->current = nullptr;
      siglongjmp(w->jmp, 1);
    }
  }
}

void reclaim_stacks(Worker* w) {
  // After an aborted block: every stack still held by a fiber goes back to the pool.
  for (int t : w->waiting) w->free_stacks.push_back(w->fibers[size_t(t)].stack);
  w->waiting.clear();
}

}  // namespace

void launch(const LaunchConfig& cfg, void (*body)(void*), void* closure) {
  (void)warp_size();
  const uint64_t threads = uint64_t(cfg.block.x) * cfg.block.y * cfg.block.z;
  if (threads == 0 || threads > 1024 || cfg.block.z > 64 ||
      cfg.grid.x == 0 || cfg.grid.y == 0 || cfg.grid.z == 0 || cfg.grid.y > 65535 || cfg.grid.z > 65535) {
    set_error(hipErrorInvalidConfiguration,
              "launch of " + kernel_name(cfg) + " with grid (" + std::to_string(cfg.grid.x) + "," +
                  std::to_string(cfg.grid.y) + "," + std::to_string(cfg.grid.z) + ") and block (" +
                  std::to_string(cfg.block.x) + "," + std::to_string(cfg.block.y) + "," +
                  std::to_string(cfg.block.z) + "): blocks hold 1 to 1024 threads, grids are nonempty");
    return;
  }
  if (uint64_t(cfg.grid.x) * cfg.block.x >= (uint64_t(1) << 32)) {
    set_error(hipErrorInvalidConfiguration, "launch of " + kernel_name(cfg) +
              ": gridDim.x * blockDim.x must stay below 2^32 on AMD devices");
    return;
  }
  if (cfg.shmem > kSharedLimit) {
    set_error(hipErrorInvalidValue, "launch of " + kernel_name(cfg) + " asks for " +
              std::to_string(cfg.shmem) + " bytes of dynamic shared memory; the limit is 65536");
    return;
  }
  record_site(cfg.site);
  Worker* w = worker();
  if (w->in_kernel) {
    set_error(hipErrorLaunchFailure, "a kernel launched from inside " + kernel_name(*w->cfg));
    return;
  }
  install_fault_handler(w);
  w->cfg = &cfg;
  w->body = body;
  w->closure = closure;
  w->block.dim = uint3{cfg.block.x, cfg.block.y, cfg.block.z};
  w->block.grid = uint3{cfg.grid.x, cfg.grid.y, cfg.grid.z};
  w->dyn_base = w->arena + 2 * kSharedLimit - (cfg.shmem + 15) / 16 * 16;
  w->error.clear();
  ThreadState* const saved = tls_thread;
  const int jumped = sigsetjmp(w->jmp, 1);
  if (jumped == 0) {
    w->in_kernel = true;
    for (unsigned z = 0; z < cfg.grid.z; ++z)
      for (unsigned y = 0; y < cfg.grid.y; ++y)
        for (unsigned x = 0; x < cfg.grid.x; ++x) run_block(w, uint3{x, y, z});
    w->in_kernel = false;
  } else {
    w->in_kernel = false;
    const Fiber* f = w->current;
    const std::string who = f ? thread_name(f->ts) : "block (" + std::to_string(w->block.idx.x) + "," +
        std::to_string(w->block.idx.y) + "," + std::to_string(w->block.idx.z) + ")";
    reclaim_stacks(w);
    if (jumped == 2) {
      const uintptr_t a = tls_fault_addr;
      const char* arena_lo = w->arena;
      std::string what;
      if (a >= uintptr_t(arena_lo) && a < uintptr_t(arena_lo) + 2 * kSharedLimit + kPage)
        what = "shared memory past the block's " + std::to_string(cfg.shmem) +
               " bytes of dynamic shared memory";
      else if (memory().in_reserve(a))
        what = memory().describe(a);
      else if (f && a >= uintptr_t(f->stack.lo) - kPage && a < uintptr_t(f->stack.lo))
        what = "the thread's stack limit (" + std::to_string(kStackBytes) + " bytes)";
      else
        what = "host memory that is no device allocation";
      char buf[64];
      std::snprintf(buf, sizeof buf, "%p", reinterpret_cast<void*>(a));
      set_error(hipErrorIllegalAddress, "out-of-bounds access at " + std::string(buf) + " (" + what +
                ") by " + who + " in " + kernel_name(cfg));
    } else {
      set_error(hipErrorLaunchFailure, w->error + " (" + who + " in " + kernel_name(cfg) + ")");
    }
    tls_thread = saved;
    w->cfg = nullptr;
    return;
  }
  tls_thread = saved;
  w->cfg = nullptr;
  if (checks_on()) {
    std::string bad = memory().check_canaries();
    if (!bad.empty()) set_error(hipErrorIllegalAddress, "out-of-bounds access: " + bad + " by " + kernel_name(cfg));
  }
}

#if defined(HIPGRAD_SIM_RACECHECK)
const bool g_fact = [] {
  add_build_fact("gpu.sim_racecheck", "on");
  return true;
}();
#endif

int warp_size() {
  static const int w = [] {
    const std::string v = env("HIPGRAD_SIM_WARP");
    int r = 64;
    if (v == "32") r = 32;
    else if (!v.empty() && v != "64") {
      std::fprintf(stderr, "hipgrad sim: HIPGRAD_SIM_WARP must be 32 or 64, got '%s'; using 64\n", v.c_str());
    }
    ::warpSize = r;
    return r;
  }();
  return w;
}

bool checks_on() {
  static const bool on = env("HIPGRAD_SIM_CHECK") != "0";
  return on;
}

}  // namespace hg::sim

// ---- the HIP runtime API --------------------------------------------------------------------------
using namespace hg::sim;

namespace {
int g_device = 0;
double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
bool device_range(const void* p, size_t n) {
  Allocation a;
  return memory().find(reinterpret_cast<uintptr_t>(p), n, &a);
}
hipError_t check_range(const void* p, size_t n, const char* what) {
  if (n == 0 || !checks_on() || device_range(p, n)) return hipSuccess;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%p", p);
  return set_error(hipErrorInvalidValue, std::string(what) + ": " + std::to_string(n) + " bytes at " +
                   buf + " are not inside one device allocation (" +
                   memory().describe(reinterpret_cast<uintptr_t>(p)) + ")");
}
}  // namespace

hipError_t hipGetDeviceCount(int* count) {
  *count = 1;
  return hipSuccess;
}
hipError_t hipSetDevice(int device) {
  if (device != 0) return set_error(hipErrorInvalidDevice, "the simulated machine has one device");
  g_device = device;
  return hipSuccess;
}
hipError_t hipGetDevice(int* device) {
  *device = g_device;
  return hipSuccess;
}
hipError_t hipGetDeviceProperties(hipDeviceProp_t* p, int device) {
  if (device != 0) return set_error(hipErrorInvalidDevice, "the simulated machine has one device");
  std::memset(p, 0, sizeof *p);
  const int w = warp_size();
  std::snprintf(p->name, sizeof p->name, "hipgrad simulated device (wave%d)", w);
  std::snprintf(p->gcnArchName, sizeof p->gcnArchName, "%s",
                w == 64 ? "gfx90a (simulated)" : "gfx1030 (simulated)");
  p->totalGlobalMem = kTotalMemory;
  p->sharedMemPerBlock = kSharedLimit;
  p->regsPerBlock = 65536;
  p->warpSize = w;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = 1024;
  p->maxThreadsDim[1] = 1024;
  p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 2147483647;
  p->maxGridSize[1] = 65535;
  p->maxGridSize[2] = 65535;
  p->clockRate = 1000000;
  p->multiProcessorCount = 4;  // small: grid-stride loops take several turns in tests
  p->major = w == 64 ? 9 : 10;
  p->minor = w == 64 ? 0 : 3;
  p->gcnArch = w == 64 ? 910 : 1030;
  p->l2CacheSize = 8 << 20;
  p->maxSharedMemoryPerMultiProcessor = int(kSharedLimit);
  return hipSuccess;
}
hipError_t hipDeviceSynchronize() { return hipSuccess; }
hipError_t hipRuntimeGetVersion(int* v) {
  *v = 0;
  return set_error(hipErrorNotSupported, "the simulated device has no HIP runtime version");
}
hipError_t hipDriverGetVersion(int* v) {
  *v = 0;
  return set_error(hipErrorNotSupported, "the simulated device has no driver");
}
hipError_t hipGetLastError() {
  const hipError_t e = tls_last_error;
  tls_last_error = hipSuccess;
  return e;
}
hipError_t hipPeekAtLastError() { return tls_last_error; }

const char* hipGetErrorName(hipError_t s) {
  switch (s) {
    case hipSuccess: return "hipSuccess";
    case hipErrorInvalidValue: return "hipErrorInvalidValue";
    case hipErrorOutOfMemory: return "hipErrorOutOfMemory";
    case hipErrorInvalidConfiguration: return "hipErrorInvalidConfiguration";
    case hipErrorInsufficientDriver: return "hipErrorInsufficientDriver";
    case hipErrorNoDevice: return "hipErrorNoDevice";
    case hipErrorInvalidDevice: return "hipErrorInvalidDevice";
    case hipErrorInvalidResourceHandle: return "hipErrorInvalidResourceHandle";
    case hipErrorNotReady: return "hipErrorNotReady";
    case hipErrorIllegalAddress: return "hipErrorIllegalAddress";
    case hipErrorLaunchOutOfResources: return "hipErrorLaunchOutOfResources";
    case hipErrorLaunchFailure: return "hipErrorLaunchFailure";
    case hipErrorNotSupported: return "hipErrorNotSupported";
  }
  return "hipErrorUnknown";
}

// The simulator's own description of this thread's latest error (kernel, thread, address).
const char* hipGetErrorString(hipError_t s) {
  static thread_local std::string text;
  const char* base = "unknown error";
  switch (s) {
    case hipSuccess: return "no error";
    case hipErrorInvalidValue: base = "invalid argument"; break;
    case hipErrorOutOfMemory: base = "out of memory"; break;
    case hipErrorInvalidConfiguration: base = "invalid configuration argument"; break;
    case hipErrorIllegalAddress: base = "an illegal memory access was encountered"; break;
    case hipErrorLaunchFailure: base = "unspecified launch failure"; break;
    case hipErrorInvalidDevice: base = "invalid device ordinal"; break;
    case hipErrorNotSupported: base = "operation not supported"; break;
    default: break;
  }
  text = std::string(base) + " [simulated device]";
  if (!tls_error_detail.empty()) text += ": " + tls_error_detail;
  return text.c_str();
}

hipError_t hipMalloc(void** ptr, size_t bytes) {
  const hipError_t e = memory().allocate(ptr, bytes);
  if (e != hipSuccess) return set_error(e, "hipMalloc of " + std::to_string(bytes) + " bytes");
  return hipSuccess;
}
hipError_t hipFree(void* ptr) {
  if (memory().release(ptr) != hipSuccess)
    return set_error(hipErrorInvalidValue, "hipFree of a pointer hipMalloc did not return");
  return hipSuccess;
}
hipError_t hipMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  *total_bytes = kTotalMemory;
  *free_bytes = kTotalMemory - memory().used();
  return hipSuccess;
}
hipError_t hipMemcpy(void* dst, const void* src, size_t bytes, hipMemcpyKind kind) {
  if (kind == hipMemcpyHostToDevice || kind == hipMemcpyDeviceToDevice)
    if (hipError_t e = check_range(dst, bytes, "hipMemcpy destination")) return e;
  if (kind == hipMemcpyDeviceToHost || kind == hipMemcpyDeviceToDevice)
    if (hipError_t e = check_range(src, bytes, "hipMemcpy source")) return e;
  if (bytes) std::memmove(dst, src, bytes);
  return hipSuccess;
}
hipError_t hipMemcpyAsync(void* dst, const void* src, size_t bytes, hipMemcpyKind kind, hipStream_t) {
  return hipMemcpy(dst, src, bytes, kind);
}
hipError_t hipMemset(void* dst, int value, size_t bytes) {
  if (hipError_t e = check_range(dst, bytes, "hipMemset")) return e;
  if (bytes) std::memset(dst, value, bytes);
  return hipSuccess;
}
hipError_t hipMemsetAsync(void* dst, int value, size_t bytes, hipStream_t) { return hipMemset(dst, value, bytes); }

hipError_t hipStreamCreate(hipStream_t* s) {
  *s = new ihipStream_t{1};
  return hipSuccess;
}
hipError_t hipStreamCreateWithFlags(hipStream_t* s, unsigned) { return hipStreamCreate(s); }
hipError_t hipStreamDestroy(hipStream_t s) {
  delete s;
  return hipSuccess;
}
hipError_t hipStreamSynchronize(hipStream_t) { return hipSuccess; }
hipError_t hipStreamWaitEvent(hipStream_t, hipEvent_t e, unsigned) {
  return e ? hipSuccess : set_error(hipErrorInvalidResourceHandle, "hipStreamWaitEvent on a null event");
}
hipError_t hipEventCreate(hipEvent_t* e) {
  *e = new ihipEvent_t();
  return hipSuccess;
}
hipError_t hipEventCreateWithFlags(hipEvent_t* e, unsigned) { return hipEventCreate(e); }
hipError_t hipEventRecord(hipEvent_t e, hipStream_t) {
  if (!e) return set_error(hipErrorInvalidResourceHandle, "hipEventRecord on a null event");
  e->ms = now_ms();
  e->recorded = true;
  return hipSuccess;
}
hipError_t hipEventSynchronize(hipEvent_t e) {
  return e ? hipSuccess : set_error(hipErrorInvalidResourceHandle, "hipEventSynchronize on a null event");
}
hipError_t hipEventElapsedTime(float* ms, hipEvent_t a, hipEvent_t b) {
  if (!a || !b || !a->recorded || !b->recorded)
    return set_error(hipErrorInvalidResourceHandle, "hipEventElapsedTime needs two recorded events");
  *ms = float(b->ms - a->ms);
  return hipSuccess;
}
hipError_t hipEventDestroy(hipEvent_t e) {
  delete e;
  return hipSuccess;
}

// ---- racecheck: memory-access hooks ---------------------------------------------------------------
// With -DHIPGRAD_SIM_RACECHECK=ON the kernel sources are compiled with GCC's -fsanitize=thread
// instrumentation, which calls the __tsan_* entry points below for every load and store the
// compiler cannot prove to be a private stack slot; there is no ThreadSanitizer runtime: these
// definitions are it. Only accesses to the running block's shared-memory arena are examined:
//   - outside the shared memory the block declared (static __shared__ arrays so far, plus the
//     dynamic bytes of the launch): an out-of-bounds error;
//   - a read of a word whose last write in this block came from another thread with no
//     __syncthreads() between (and, within one wavefront, no warp operation between): a race.
// Atomics are performed (they are real atomics) and not examined.
namespace hg::sim {
namespace {

std::string slot_of(Worker* w, uintptr_t a) {
  const uintptr_t dyn = reinterpret_cast<uintptr_t>(w->dyn_base);
  if (a >= dyn) return "extern __shared__ memory + " + std::to_string(a - dyn) + " bytes";
  for (const SharedSlot& s : w->slots) {
    const uintptr_t lo = dyn - s.offset;
    if (a >= lo && a < lo + s.bytes) return std::string("__shared__ ") + s.name + " + " + std::to_string(a - lo) + " bytes";
  }
  return "shared memory";
}

std::string linear_name(Worker* w, int linear) {
  const unsigned nx = w->block.dim.x, ny = w->block.dim.y;
  char buf[64];
  std::snprintf(buf, sizeof buf, "thread (%u,%u,%u)", unsigned(linear) % nx, unsigned(linear) / nx % ny,
                unsigned(linear) / (nx * ny));
  return buf;
}

__attribute__((noinline)) void check_shared(Worker* w, uintptr_t a, size_t n, bool write) {
  const uintptr_t dyn = reinterpret_cast<uintptr_t>(w->dyn_base);
  const uintptr_t lo = dyn - w->static_bytes, hi = dyn + w->cfg->shmem;
  if (a < lo || a + n > hi) {
    fail_in_kernel(std::string("shared-memory ") + (write ? "write" : "read") + " of " + std::to_string(n) +
                   " bytes outside the block's declared shared memory (" + std::to_string(w->static_bytes) +
                   " bytes of __shared__ arrays, " + std::to_string(w->cfg->shmem) + " dynamic)");
  }
  const ThreadState* t = tls_thread;
  const int me = t->linear;
  const int warp = me / warpSize;
  const uint32_t epoch = uint32_t(w->gen) + 1;
  const size_t base = reinterpret_cast<uintptr_t>(w->arena);
  for (uintptr_t q = a & ~uintptr_t(3); q < a + n; q += 4) {
    const size_t i = (q - base) / 4;
    Shadow& s = w->shadow[i];
    if (write) {
      s.epoch = epoch;
      s.warp_gen = uint32_t(w->warps[size_t(warp)].gen);
      s.writer = me;
      if (i < w->shadow_lo) w->shadow_lo = i;
    } else if (s.epoch == epoch && s.writer != me) {
      const bool same_warp = s.writer / warpSize == warp;
      if (same_warp && s.warp_gen != uint32_t(w->warps[size_t(warp)].gen)) continue;
      fail_in_kernel("shared-memory race: " + linear_name(w, me) + " reads " + slot_of(w, q) + ", which " +
                     linear_name(w, s.writer) + " wrote with no __syncthreads()" +
                     (same_warp ? " or warp operation" : "") + " between");
    }
  }
}

inline void on_access(const void* p, size_t n, bool write) {
  Worker* w = tls_worker;
  if (w == nullptr || !w->in_kernel || !checks_on()) return;
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (a - reinterpret_cast<uintptr_t>(w->arena) >= 2 * kSharedLimit + kPage) return;  // + its guard page
  check_shared(w, a, n, write);
}

}  // namespace
}  // namespace hg::sim

extern "C" {
#define HG_SIM_ACCESS(n)                                                                    \
  void __tsan_read##n(void* p) { hg::sim::on_access(p, n, false); }                         \
  void __tsan_write##n(void* p) { hg::sim::on_access(p, n, true); }                         \
  void __tsan_unaligned_read##n(void* p) { hg::sim::on_access(p, n, false); }               \
  void __tsan_unaligned_write##n(void* p) { hg::sim::on_access(p, n, true); }               \
  void __tsan_volatile_read##n(void* p) { hg::sim::on_access(p, n, false); }                \
  void __tsan_volatile_write##n(void* p) { hg::sim::on_access(p, n, true); }
HG_SIM_ACCESS(1)
HG_SIM_ACCESS(2)
HG_SIM_ACCESS(4)
HG_SIM_ACCESS(8)
HG_SIM_ACCESS(16)
#undef HG_SIM_ACCESS
void __tsan_read_range(void* p, unsigned long n) { hg::sim::on_access(p, n, false); }
void __tsan_write_range(void* p, unsigned long n) { hg::sim::on_access(p, n, true); }
void __tsan_init() {}
void __tsan_func_entry(void*) {}
void __tsan_func_exit() {}
void __tsan_vptr_update(void**, void*) {}
void __tsan_vptr_read(void**) {}
void __tsan_atomic_thread_fence(int mo) { __atomic_thread_fence(__ATOMIC_SEQ_CST); (void)mo; }
void __tsan_atomic_signal_fence(int mo) { __atomic_signal_fence(__ATOMIC_SEQ_CST); (void)mo; }

#define HG_SIM_ATOMIC(bits, T)                                                                        \
  T __tsan_atomic##bits##_load(const volatile T* a, int) { return __atomic_load_n(a, __ATOMIC_SEQ_CST); } \
  void __tsan_atomic##bits##_store(volatile T* a, T v, int) { __atomic_store_n(a, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##bits##_exchange(volatile T* a, T v, int) { return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##bits##_fetch_add(volatile T* a, T v, int) { return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##bits##_fetch_sub(volatile T* a, T v, int) { return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##bits##_fetch_and(volatile T* a, T v, int) { return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##bits##_fetch_or(volatile T* a, T v, int) { return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##bits##_fetch_xor(volatile T* a, T v, int) { return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##bits##_fetch_nand(volatile T* a, T v, int) { return __atomic_fetch_nand(a, v, __ATOMIC_SEQ_CST); } \
  int __tsan_atomic##bits##_compare_exchange_strong(volatile T* a, T* c, T v, int, int) {              \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);             \
  }                                                                                                   \
  int __tsan_atomic##bits##_compare_exchange_weak(volatile T* a, T* c, T v, int, int) {                \
    return __atomic_compare_exchange_n(a, c, v, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);              \
  }                                                                                                   \
  T __tsan_atomic##bits##_compare_exchange_val(volatile T* a, T c, T v, int, int) {                    \
    __atomic_compare_exchange_n(a, &c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                   \
    return c;                                                                                         \
  }
HG_SIM_ATOMIC(8, uint8_t)
HG_SIM_ATOMIC(16, uint16_t)
HG_SIM_ATOMIC(32, uint32_t)
HG_SIM_ATOMIC(64, uint64_t)
#undef HG_SIM_ATOMIC
}

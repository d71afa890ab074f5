// The CPU backend's policy for dispatch (core/dispatch.h, BackendPolicy).
#include "../core/dispatch.h"
#include "cpu_kernels.h"

namespace hg::cpu {
namespace {

// The fastest CPU kernel depends on the thread count (OpenBLAS vs hipgrad's OpenMP GEMM at 1 and
// 2 threads), so CPU choices are remembered per count.
std::string key_prefix() { return "threads=" + std::to_string(num_threads()) + ","; }

// With 2+ threads, OpenBLAS must be this much faster than hipgrad's best kernel to be chosen.
constexpr double kVendorMargin = 0.15;

// With more than one thread, OpenBLAS (the vendor candidate) runs on its own pthread pool beside
// hipgrad's OpenMP one; in a chain of ops the two pools' idle threads spin while the other works,
// which a kernel timed on its own does not show (the MLP's 256x10 layer: 0.05 ms handwritten vs
// 0.07-0.21 ms OpenBLAS inside the engine at 2 threads, after OpenBLAS had won the isolated timing
// by 1%). So there the vendor must beat the fastest handwritten candidate by kVendorMargin;
// within it the handwritten one is kept.
size_t prefer_one_pool(const std::vector<Candidate>& ids, const std::vector<double>& ms,
                       size_t best) {
  const auto is_vendor = [](const Candidate& c) { return c.role == KernelRole::vendor; };
  if (!is_vendor(ids[best]) || num_threads() < 2) return best;
  size_t own = best;
  for (size_t i = 0; i < ids.size(); ++i)
    if (!is_vendor(ids[i]) && (own == best || ms[i] < ms[own])) own = i;
  return own != best && ms[own] <= ms[best] * (1.0 + kVendorMargin) ? own : best;
}

const bool registered =
    (set_backend_policy(Backend::cpu, BackendPolicy{&key_prefix, &prefer_one_pool}), true);

}  // namespace
}  // namespace hg::cpu

// Unpacked (small-problem) GEMM strip kernel for avx2: 6 x 16 register tile (contract:
// gemm_unpacked_kernel.h; code: gemm_unpacked.inc; flags from CMakeLists.txt by file name).
// Test: pytest tests/ops/test_gemm.py -k alternate   Bench: python3 bench/bench_gemm_alternates.py
#include "gemm_unpacked_kernel.h"

namespace hg::cpu {
namespace unpacked_avx2 {
constexpr int kW = 8, kMR = 6;
#include "gemm_unpacked.inc"
}  // namespace unpacked_avx2

const GemmUnpackedKernel gemm_unpacked_avx2 = {"cpu.gemm_unpacked_avx2_6x16",
    unpacked_avx2::kMR, unpacked_avx2::kNR, &unpacked_avx2::strip};

}  // namespace hg::cpu

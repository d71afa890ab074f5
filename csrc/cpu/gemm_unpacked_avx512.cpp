// Unpacked (small-problem) GEMM strip kernel for avx512: 8 x 32 register tile (contract:
// gemm_unpacked_kernel.h; code: gemm_unpacked.inc; flags from CMakeLists.txt by file name).
// Test: pytest tests/ops/test_gemm.py -k alternate   Bench: python3 bench/bench_gemm_alternates.py
#include "gemm_unpacked_kernel.h"

namespace hg::cpu {
namespace unpacked_avx512 {
constexpr int kW = 16, kMR = 8;
#include "gemm_unpacked.inc"
}  // namespace unpacked_avx512

const GemmUnpackedKernel gemm_unpacked_avx512 = {"cpu.gemm_unpacked_avx512_8x32",
    unpacked_avx512::kMR, unpacked_avx512::kNR, &unpacked_avx512::strip};

}  // namespace hg::cpu

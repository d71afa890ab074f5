// Unpacked (small-problem) GEMM strip kernel for generic: 4 x 8 register tile (contract:
// gemm_unpacked_kernel.h; code: gemm_unpacked.inc; flags from CMakeLists.txt by file name).
// Test: pytest tests/ops/test_gemm.py -k alternate   Bench: python3 bench/bench_gemm_alternates.py
#include "gemm_unpacked_kernel.h"

namespace hg::cpu {
namespace unpacked_generic {
constexpr int kW = 4, kMR = 4;
#include "gemm_unpacked.inc"
}  // namespace unpacked_generic

const GemmUnpackedKernel gemm_unpacked_generic = {"cpu.gemm_unpacked_generic_4x8",
    unpacked_generic::kMR, unpacked_generic::kNR, &unpacked_generic::strip};

}  // namespace hg::cpu

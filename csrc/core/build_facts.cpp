#include "build_facts.h"

namespace hg {

std::map<std::string, std::string>& build_facts() {
  static std::map<std::string, std::string> facts = {
      {"version", HIPGRAD_VERSION},
      {"gpu.platform", HIPGRAD_GPU_PLATFORM},
      {"cpu.blas", "OpenBLAS " HIPGRAD_OPENBLAS_VERSION " (scipy-openblas32 wheel)"},
      {"compiler", __VERSION__},
  };
  return facts;
}

}  // namespace hg

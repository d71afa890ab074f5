// The kernel table of every op, generated from HG_OP_TABLE (ops.h).
#include <cstddef>
#include <string_view>

#include "ops.h"

namespace hg {

#define HG_DEFINE_OP(accessor, name, Args, tunable, cpu_vendor, gpu_vendor) \
  OpKernels<Args>& accessor##_op() {                                        \
    static OpKernels<Args> op(name, tunable, cpu_vendor, gpu_vendor);       \
    return op;                                                              \
  }
HG_OP_TABLE(HG_DEFINE_OP)
#undef HG_DEFINE_OP

namespace {

constexpr std::string_view kOpNames[] = {
#define HG_OP_NAME(accessor, name, ...) name,
    HG_OP_TABLE(HG_OP_NAME)
#undef HG_OP_NAME
};
static_assert(std::size(kOpNames) == size_t(kOpCount), "one name per row of HG_OP_TABLE");

constexpr bool names_unique() {
  for (size_t i = 0; i < std::size(kOpNames); ++i) {
    if (kOpNames[i].empty()) return false;
    for (size_t j = i + 1; j < std::size(kOpNames); ++j)
      if (kOpNames[i] == kOpNames[j]) return false;
  }
  return true;
}
static_assert(names_unique(), "every op in HG_OP_TABLE needs its own non-empty name");

}  // namespace

std::vector<OpKernelsBase*>& all_ops() {
  static std::vector<OpKernelsBase*> ops = {
#define HG_OP_POINTER(accessor, ...) &accessor##_op(),
      HG_OP_TABLE(HG_OP_POINTER)
#undef HG_OP_POINTER
  };
  return ops;
}

}  // namespace hg

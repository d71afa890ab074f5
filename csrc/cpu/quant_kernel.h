// The contract between the INT8 drivers (quant.cpp: threading, tiling, im2col, scratch) and one
// instruction set's building blocks (quant_kernel.inc, compiled once per ISA by
// quant_generic.cpp, quant_avx2.cpp, quant_avx512.cpp and quant_avx512vnni.cpp).
//
// Packed operands are arrays of 32-bit groups, each holding `group` consecutive k values of one
// row: 4 bytes for vpdpbusd (activations as u8 x + 128, weights as s8) or 2 int16 for pmaddwd
// (both signed, no shift). Weights pack k past the end as 0, so whatever activations hold
// there adds nothing. A dot tile computes
//   acc[i * (NV * lanes) + j] = sum_g dot(a[i * lda + g], b[g * (NV * lanes) + j])
// for i < MR rows of the broadcast side `a` (packed rows) and j < NV * lanes columns of the
// vector side `b` (a k-group-major panel), in int32 (exact; wraps like int32 beyond 2^31).
// With the shift, the true sum is acc - 128 * sum_k w[channel, k]: the epilogue subtracts
// corr[channel] first.
#pragma once
#include <cstdint>

#include "activation_math.h"

namespace hg::cpu {

constexpr int kQMaxRows = 6;     // largest register tile of any ISA: rows ...
constexpr int kQMaxVectors = 4;  // ... times vectors of `lanes` int32 columns

// Per output channel, for the whole call: y = act(float(acc - corr[c]) * scale[c] + bias[c]),
// scale[c] = x_scale * w_scale[c] and bias[c] = 0 without a bias: the formula of the op. The
// arrays extend kQMaxVectors * 16 entries past the last channel (zeros) for whole-vector loads.
struct QChannels {
  const int32_t* corr = nullptr;
  const float* scale = nullptr;
  const float* bias = nullptr;
  bool has_act = false;
  ActKind act = ActKind::relu;
  float alpha = 0.f;
};

// Where the columns of one panel of a tile go (see QIsaKernels::epilogue).
struct QPanelMap {
  const uint32_t* mask = nullptr;
  const int64_t* dst = nullptr;
};

using QDotTileFn = void (*)(int64_t groups, const uint32_t* a, int64_t lda, const uint32_t* b,
                            int32_t* acc);

struct QIsaKernels {
  const char* isa;     // "avx512_vnni" | "avx512" | "avx2" | "generic"
  int lanes;           // int32 columns per vector
  int max_rows;        // register tile: up to max_rows x max_vectors * lanes
  int max_vectors;
  int group;           // k values per packed 32-bit group: 4 (vpdpbusd) or 2 (pmaddwd)
  bool shift;          // activations packed as u8 x + 128; corr = 128 * sum_k w
  // q[i] = clamp(round_half_even(x[i] * inv_scale), -127, 127), NaN -> 0.
  void (*quantize)(const float* x, int64_t n, float inv_scale, int8_t* q);
  // Packed rows: dst[i * groups + g] = group g of row i (src + i * ld, K values), i < rows.
  // `activation` rows take the shift. corr (weights, if not null): corr[i] = 128 * sum_k row i
  // with the shift, untouched without.
  void (*pack_rows)(const int8_t* src, int64_t ld, int64_t rows, int64_t K, bool activation,
                    uint32_t* dst, int32_t* corr);
  // A panel of weight rows: dst[g * width + i] = group g of row i for i < rows; 0 up to width.
  // corr as pack_rows.
  void (*pack_panel)(const int8_t* src, int64_t ld, int64_t rows, int64_t K, int64_t width,
                     uint32_t* dst, int32_t* corr);
  // Convolution taps: dst[g * width + j] = group g of activations base[off[k] + j] over
  // k in [g * group, (g + 1) * group) (0 for k >= K) for j < n; 0 for n <= j < width.
  void (*pack_taps)(const int8_t* base, const int64_t* off, int64_t K, int64_t n, int64_t width,
                    uint32_t* dst);
  // dot[a_is_activation][MR - 1][NV - 1]; entries past max_rows / max_vectors are null.
  QDotTileFn dot[2][kQMaxRows][kQMaxVectors];
  // The epilogue of rows x nv vectors of acc (row i at acc + i * ld_acc): vector v of row i
  // writes its lanes set in map.mask[v], in lane order, to out + i * ld_out + map.dst[v] onward.
  // The channel of row i is c0 + i (channel_per_row: convolution), else that of lane l of vector
  // v is c0 + v * lanes + l (GEMM).
  void (*epilogue)(const int32_t* acc, int64_t ld_acc, int rows, int64_t nv, const QPanelMap& map,
                   const QChannels& ch, int64_t c0, bool channel_per_row, float* out,
                   int64_t ld_out);
};

// activation_value compiled once, without ISA flags (quant.cpp), for the epilogues' rarer
// activations: an inline copy from an ISA file could be the one the linker keeps for everyone.
float quant_activation_value(ActKind kind, float x, float alpha);

extern const QIsaKernels qkernels_generic;
extern const QIsaKernels qkernels_avx2;
extern const QIsaKernels qkernels_avx512;
extern const QIsaKernels qkernels_avx512_vnni;

}  // namespace hg::cpu

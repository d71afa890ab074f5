// CPU INT8 inference kernels: quantize (symmetric, round half to even, clamp to [-127, 127],
// NaN -> 0), qgemm and qconv2d with int32 accumulation and a fused epilogue
//   y = act(float(acc) * (x_scale * w_scale[c]) + bias[c])   (multiply rounded before the add).
//
// Kernels, one per instruction set (isa.h: HIPGRAD_CPU_ISA or hipgrad._C._set_cpu_isa force
// one, "avx512_novnni" keeps AVX-512 without VNNI); quant_kernel.h has the building blocks'
// contract, quant_kernel.inc their code. The op table names the one in use:
//   cpu.quantize_int8_<isa>, cpu.qgemm_int8_<isa>_<MR>x<NR>, cpu.qconv2d_int8_<isa>_<MR>x<NR>
// with <isa> avx512_vnni (vpdpbusd, 6x64), avx512 (vpmaddwd, 6x64), avx2 (4x24), generic (4x8).
//
// qgemm: a tile is MR rows of X (broadcast) by NR columns of W (vectors). W is packed once per
// call into k-group-major panels of NR columns; each block of MR rows of X is packed once and
// runs against every panel (or a range of panels when M is too small to keep all threads busy).
// qconv2d: tile rows are output channels (broadcast weights), columns are output pixels. Per
// (image, group) the input is copied once into a zero-padded buffer split by stride phase, in
// which every im2col row is one contiguous run over a "grid" of pixels with pitch Ws (Q real
// outputs per row, Ws - Q discarded): a panel of NR grid pixels packs straight from `group`
// such runs, with no per-element bounds tests, and the epilogue writes the real pixels' NCHW
// rows. Threads own (image, group, panel range) tasks.
// Threads: hg::cpu::num_threads() above ~2^18 multiply-adds, one inside another parallel region.
// No CPU vendor library here has an INT8 GEMM (OpenBLAS has none): the vendor variant falls back.
// Tests: tests/ops/test_quant.py. Bench: bench/bench_infer.py (int8 vs fp32).

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "../core/checks.h"
#include "cpu_kernels.h"
#include "isa.h"
#include "quant_kernel.h"

namespace hg::cpu {

float quant_activation_value(ActKind kind, float x, float alpha) {
  return activation_value(kind, x, alpha);
}

namespace {

const QIsaKernels* const kIsaKernels[] = {&qkernels_generic, &qkernels_avx2, &qkernels_avx512,
                                        &qkernels_avx512_vnni};

int active_isa_index() {
  switch (cpu_isa()) {
    case CpuIsa::avx512: return cpu_avx512_vnni() ? 3 : 2;
    case CpuIsa::avx2: return 1;
    default: return 0;
  }
}
const QIsaKernels& active_kernels() { return *kIsaKernels[active_isa_index()]; }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Scratch of n elements; a failure is a MemoryError naming the op and the size. Only called
// outside parallel regions (an exception must not leave one): each thread's scratch is
// allocated before the region.
template <class T>
std::unique_ptr<T[]> scratch(const char* op, int64_t n) {
  n = std::max<int64_t>(n, 1);
  T* p = n <= kMaxElements ? new (std::nothrow) T[size_t(n)] : nullptr;
  if (!p) fail(ErrorKind::memory, op, ": cannot allocate ", n, " x ", sizeof(T), " bytes of scratch");
  return std::unique_ptr<T[]>(p);
}

int threads_for(double macs, int64_t tasks) {
  return region_threads(macs, double(1 << 18), tasks);
}

// Panel ranges per row block (or image): 1 while there are enough blocks for every thread,
// else enough ranges for about two tasks per thread.
int64_t panel_chunks(int64_t blocks, int64_t panels, int threads) {
  return blocks >= 2 * threads ? 1 : std::min(panels, ceil_div(2 * threads, blocks));
}

// The epilogue's per-channel constants for one call (quant_kernel.h, QChannels); the packers
// fill corr where the ISA shifts activations.
struct ChannelTable {
  static constexpr int64_t kPad = kQMaxVectors * 16;
  std::vector<int32_t> corr;
  std::vector<float> scale, bias;
  QChannels view;
  ChannelTable(int64_t channels, float x_scale, const float* w_scale, const float* b, bool has_act,
               ActKind act, float alpha)
      : corr(size_t(channels + kPad)),
        scale(size_t(channels + kPad)),
        bias(size_t(channels + kPad)) {
    for (int64_t c = 0; c < channels; ++c) {
      scale[c] = x_scale * w_scale[c];
      bias[c] = b ? b[c] : 0.f;
    }
    view.corr = corr.data();
    view.scale = scale.data();
    view.bias = bias.data();
    view.has_act = has_act;
    view.act = act;
    view.alpha = alpha;
  }
};

// QPanelMap of every panel of a call: panel p's vectors are entries [p * max_vectors, ...).
struct PanelMaps {
  std::vector<uint32_t> mask;
  std::vector<int64_t> dst;
  int64_t stride;
  // Output column of grid column j (or -1: not stored) for j < columns, in panels of
  // lanes * max_vectors.
  template <class Out>
  PanelMaps(const QIsaKernels& T, int64_t panels, int64_t columns, Out out_of)
      : mask(size_t(panels * T.max_vectors)),
        dst(size_t(panels * T.max_vectors)),
        stride(T.max_vectors) {
    for (int64_t v = 0; v < panels * T.max_vectors; ++v) {
      mask[v] = 0;
      dst[v] = 0;
      for (int64_t l = T.lanes - 1; l >= 0; --l) {
        const int64_t j = v * T.lanes + l, o = j < columns ? out_of(j) : -1;
        if (o < 0) continue;
        mask[v] |= 1u << l;
        dst[v] = o;  // ends at the lowest stored lane
      }
    }
  }
  QPanelMap panel(int64_t p) const { return {mask.data() + p * stride, dst.data() + p * stride}; }
};

void quantize_kernel(const QuantizeArgs& a) {
  const QIsaKernels& T = active_kernels();
  const int64_t block = 1 << 14, blocks = ceil_div(a.n, block);
  const int threads = region_threads(double(a.n), double(1 << 16) + 1, blocks);
  parallel_for(blocks, threads, [&](int64_t b) {
    T.quantize(a.x + b * block, std::min(block, a.n - b * block), a.inv_scale, a.q + b * block);
  });
}

void qgemm_kernel(const QGemmArgs& a) {
  if (a.M == 0 || a.N == 0) return;
  const QIsaKernels& T = active_kernels();
  const int64_t K = a.K, groups = ceil_div(K, T.group), L = T.lanes;
  const int64_t NR = L * T.max_vectors, panels = ceil_div(a.N, NR);
  const int MR = T.max_rows;
  const int64_t blocks = ceil_div(a.M, MR);
  ChannelTable ch(a.N, a.x_scale, a.w_scale, a.bias, a.has_act, a.act, a.alpha);
  const auto wpack = scratch<uint32_t>("qgemm", panels * groups * NR);
  const int threads = threads_for(double(a.M) * a.N * K, blocks * panels);
  const int64_t chunks = panel_chunks(blocks, panels, threads);
  const int64_t per_chunk = ceil_div(panels, chunks);
  const PanelMaps maps(T, panels, a.N, [&](int64_t j) { return j % NR; });  // from the panel's n0
  parallel_for(panels, threads, [&](int64_t p) {
    const int64_t cols = std::min(NR, a.N - p * NR);
    T.pack_panel(a.wq + p * NR * K, K, cols, K, ceil_div(cols, L) * L,
                 wpack.get() + p * groups * NR, ch.corr.data() + p * NR);
  });
  std::vector<std::unique_ptr<uint32_t[]>> xpacks(threads);
  std::vector<std::unique_ptr<int32_t[]>> accs(threads);
  for (int i = 0; i < threads; ++i)
    xpacks[i] = scratch<uint32_t>("qgemm", groups * MR), accs[i] = scratch<int32_t>("qgemm", MR * NR);
  parallel_for(blocks * chunks, threads, [&](int64_t t) {
    uint32_t* const xpack = xpacks[parallel_slot()].get();
    int32_t* const acc = accs[parallel_slot()].get();
    const int64_t m0 = t / chunks * MR;
    const int rows = int(std::min<int64_t>(MR, a.M - m0));
    T.pack_rows(a.xq + m0 * K, K, rows, K, true, xpack, nullptr);
    const int64_t p0 = t % chunks * per_chunk, p1 = std::min(panels, p0 + per_chunk);
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n0 = p * NR, cols = std::min(NR, a.N - n0), nv = ceil_div(cols, L);
      T.dot[1][rows - 1][nv - 1](groups, xpack, groups, wpack.get() + p * groups * NR, acc);
      T.epilogue(acc, nv * L, rows, nv, maps.panel(p), ch.view, n0, false, a.y + m0 * a.N + n0,
                 a.N);
    }
  });
}

// The input of one (image, group) as the convolution reads it: zero-padded, then split by
// stride phase: buf[((c * sh + a) * sw + b) * Hs * Ws + i * Ws + j] =
// xpad[c][i * sh + a][j * sw + b].
// Tap (r, s) of output (p, q) is then phase ((r * dh) % sh, (s * dw) % sw) at
// [p + r * dh / sh][q + s * dw / sw]: one contiguous run over the grid j = p * Ws + q.
// Phases no tap reads are left zero.
struct PhaseSplit {
  const ConvGeometry& g;
  int64_t sh, sw, Hs, Ws, plane;
  std::vector<char> row_used, col_used;
  explicit PhaseSplit(const ConvGeometry& geo)
      : g(geo), sh(geo.stride_h), sw(geo.stride_w), Hs(ceil_div(geo.H + 2 * geo.pad_h, sh)),
        Ws(ceil_div(geo.W + 2 * geo.pad_w, sw)), plane(Hs * Ws), row_used(size_t(sh)),
        col_used(size_t(sw)) {
    for (int64_t r = 0; r < g.R; ++r) row_used[r * g.dil_h % sh] = 1;
    for (int64_t s = 0; s < g.S; ++s) col_used[s * g.dil_w % sw] = 1;
  }
  // Stride 1 without padding: the input itself is the buffer.
  bool direct() const { return sh == 1 && sw == 1 && g.pad_h == 0 && g.pad_w == 0; }
  int64_t bytes(int64_t channels) const { return channels * sh * sw * plane; }
  void fill(const int8_t* x, int64_t channels, int8_t* buf) const;
  // Input row src into the column phases of one buffer row.
  void split_columns(const int8_t* src, int8_t* row) const;
};

// even[i] = src[2 * i] and odd[i] = src[2 * i + 1] for the i that exist in src[0, n); a null
// destination is skipped.
void split_parity(const int8_t* src, int64_t n, int8_t* even, int8_t* odd) {
  int64_t i = 0;
#if defined(__SSE2__)
  const __m128i low = _mm_set1_epi16(0x00FF);
  for (; 2 * i + 32 <= n; i += 16) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i + 16));
    if (even)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(even + i),
                       _mm_packus_epi16(_mm_and_si128(a, low), _mm_and_si128(b, low)));
    if (odd)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(odd + i),
                       _mm_packus_epi16(_mm_srli_epi16(a, 8), _mm_srli_epi16(b, 8)));
  }
#endif
  for (; 2 * i < n; ++i) {
    if (even) even[i] = src[2 * i];
    if (odd && 2 * i + 1 < n) odd[i] = src[2 * i + 1];
  }
}

// Input column iw lands in column phase (iw + pad_w) % sw at (iw + pad_w) / sw.
void PhaseSplit::split_columns(const int8_t* src, int8_t* row) const {
  if (sw == 1) {
    std::memcpy(row + g.pad_w, src, size_t(g.W));
  } else if (sw == 2) {
    const int64_t be = g.pad_w % 2, bo = 1 - be;
    split_parity(src, g.W, col_used[be] ? row + be * plane + g.pad_w / 2 : nullptr,
                 col_used[bo] ? row + bo * plane + (g.pad_w + 1) / 2 : nullptr);
  } else {
    for (int64_t b = 0; b < sw; ++b) {
      if (!col_used[b]) continue;
      // j * sw + b - pad_w in [0, W)
      const int64_t j0 = std::max<int64_t>(0, ceil_div(g.pad_w - b, sw));
      const int64_t j1 = std::min(Ws, ceil_div(g.W + g.pad_w - b, sw));
      for (int64_t j = j0; j < j1; ++j) row[b * plane + j] = src[j * sw + b - g.pad_w];
    }
  }
}

void PhaseSplit::fill(const int8_t* x, int64_t channels, int8_t* buf) const {
  std::memset(buf, 0, size_t(bytes(channels)));
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t a = 0; a < sh; ++a) {
      if (!row_used[a]) continue;
      // Buffer row i of phase a holds input row i * sh + a - pad_h, where that is in [0, H).
      const int64_t i0 = std::max<int64_t>(0, ceil_div(g.pad_h - a, sh));
      const int64_t i1 = std::min(Hs, ceil_div(g.H + g.pad_h - a, sh));
      int8_t* dst = buf + (c * sh + a) * sw * plane;
      for (int64_t i = i0; i < i1; ++i)
        split_columns(x + (c * g.H + i * sh + a - g.pad_h) * g.W, dst + i * Ws);
    }
}

void qconv2d_kernel(const QConvArgs& a) {
  const ConvGeometry& g = a.g;
  const QIsaKernels& T = active_kernels();
  const int64_t cpg = g.C / g.groups, kpg = g.K / g.groups, crs = cpg * g.R * g.S;
  const int64_t groups = ceil_div(crs, T.group), L = T.lanes, NR = L * T.max_vectors;
  const PhaseSplit ph(g);
  const bool direct = ph.direct();
  const int64_t grid = (g.P - 1) * ph.Ws + g.Q, panels = ceil_div(grid, NR);
  // Tap k = (c, r, s) reads the run that starts at off[k] in the buffer.
  std::vector<int64_t> off(static_cast<size_t>(crs));
  for (int64_t k = 0; k < crs; ++k) {
    const int64_t c = k / (g.R * g.S), rh = k / g.S % g.R * g.dil_h, sw = k % g.S * g.dil_w;
    off[k] = ((c * ph.sh + rh % ph.sh) * ph.sw + sw % ph.sw) * ph.plane + rh / ph.sh * ph.Ws +
             sw / ph.sw;
  }
  // Channel tiles of near-equal height: tile t of a group is rows [t * kpg / tiles, ...).
  const int64_t tiles = ceil_div(kpg, T.max_rows);
  ChannelTable ch(g.K, a.x_scale, a.w_scale, a.bias, a.has_act, a.act, a.alpha);
  // Weights packed at load (qpack_weight; the front end checked the tag and shape) or here.
  std::unique_ptr<uint32_t[]> own;
  const uint32_t* wpack;
  if (a.packed) {
    wpack = reinterpret_cast<const uint32_t*>(a.packed + kQPackHeader);
    std::memcpy(ch.corr.data(), a.packed + kQPackHeader + g.K * groups, size_t(g.K) * 4);
  } else {
    own = scratch<uint32_t>("qconv2d", g.K * groups);
    T.pack_rows(a.wq, crs, g.K, crs, false, own.get(), ch.corr.data());
    wpack = own.get();
  }
  const int64_t images = g.N * g.groups;
  const int threads = threads_for(double(g.N) * g.K * g.P * g.Q * crs, images * panels);
  const int64_t chunks = panel_chunks(images, panels, threads);
  const int64_t per_chunk = ceil_div(panels, chunks);
  const PanelMaps maps(T, panels, grid, [&](int64_t j) {
    const int64_t q = j % ph.Ws;
    return q < g.Q ? j / ph.Ws * g.Q + q : -1;  // the pixel's index in its output plane
  });
  struct Scratch {
    std::unique_ptr<int8_t[]> buf;
    std::unique_ptr<uint32_t[]> col;
    std::unique_ptr<int32_t[]> acc;
  };
  std::vector<Scratch> scratches(threads);
  for (Scratch& sc : scratches) {
    sc.buf = scratch<int8_t>("qconv2d", direct ? 0 : ph.bytes(cpg));
    sc.col = scratch<uint32_t>("qconv2d", groups * NR);
    sc.acc = scratch<int32_t>("qconv2d", T.max_rows * NR);
  }
  parallel_for(images * chunks, threads, [&](int64_t t) {
    Scratch& sc = scratches[parallel_slot()];
    int8_t* const buf = sc.buf.get();
    uint32_t* const col = sc.col.get();
    int32_t* const acc = sc.acc.get();
    const int64_t n = t / chunks / g.groups, gi = t / chunks % g.groups, k0 = gi * kpg;
    const int8_t* x = a.xq + (n * g.C + gi * cpg) * g.H * g.W;
    if (!direct) ph.fill(x, cpg, buf);
    const int8_t* base = direct ? x : buf;
    float* y = a.y + (n * g.K + k0) * g.P * g.Q;
    const int64_t p0 = t % chunks * per_chunk, p1 = std::min(panels, p0 + per_chunk);
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t j0 = p * NR, cols = std::min(NR, grid - j0), nv = ceil_div(cols, L);
      T.pack_taps(base + j0, off.data(), crs, cols, nv * L, col);
      for (int64_t tile = 0; tile < tiles; ++tile) {
        const int64_t r0 = tile * kpg / tiles, r1 = (tile + 1) * kpg / tiles;
        const int rows = int(r1 - r0);
        T.dot[0][rows - 1][nv - 1](groups, wpack + (k0 + r0) * groups, groups, col, acc);
        T.epilogue(acc, nv * L, rows, nv, maps.panel(p), ch.view, k0 + r0, true,
                   y + r0 * g.P * g.Q, g.P * g.Q);
      }
    }
  });
}

// The layout qconv2d takes: header, rows packed by pack_rows, then the rows' corr (0 where the
// ISA does not shift activations).
void qpack_weight_kernel(const QPackWeightArgs& a) {
  const QIsaKernels& T = active_kernels();
  int32_t* const h = a.packed;
  h[0] = cpu_qpack_tag();
  h[1] = int32_t(a.rows);
  h[2] = int32_t(a.K);
  h[3] = int32_t(a.groups);
  h[4] = T.group;
  int32_t* const corr = h + kQPackHeader + a.rows * a.groups;
  std::fill(corr, corr + a.rows, 0);
  if (a.rows) T.pack_rows(a.wq, a.K, a.rows, a.K, false,
                          reinterpret_cast<uint32_t*>(h + kQPackHeader), corr);
}

// The op table names the kernels in use; re-registered whenever the ISA is forced.
void register_quant_kernels() {
  static std::string names[4][4];
  const int v = active_isa_index();
  const QIsaKernels& T = *kIsaKernels[v];
  if (names[v][0].empty()) {
    const std::string tile =
        std::to_string(T.max_rows) + "x" + std::to_string(T.lanes * T.max_vectors);
    names[v][0] = std::string("cpu.quantize_int8_") + T.isa;
    names[v][1] = std::string("cpu.qgemm_int8_") + T.isa + "_" + tile;
    names[v][2] = std::string("cpu.qconv2d_int8_") + T.isa + "_" + tile;
    names[v][3] = std::string("cpu.qpack_weight_") + T.isa;
  }
  quantize_op().add(Backend::cpu, Variant::handwritten, names[v][0].c_str(), &quantize_kernel);
  qgemm_op().add(Backend::cpu, Variant::handwritten, names[v][1].c_str(), &qgemm_kernel);
  qconv2d_op().add(Backend::cpu, Variant::handwritten, names[v][2].c_str(), &qconv2d_kernel);
  qpack_weight_op().add(Backend::cpu, Variant::handwritten, names[v][3].c_str(),
                        &qpack_weight_kernel);
}

}  // namespace
}  // namespace hg::cpu

// Tag: "QP" and the ISA index, so a buffer packed under another ISA (other group size, shift
// or corr) is told apart.
int32_t hg::cpu_qpack_tag() { return int32_t(0x51500000 | hg::cpu::active_isa_index()); }
int64_t hg::cpu_qpack_groups(int64_t K) {
  return hg::cpu::ceil_div(K, hg::cpu::active_kernels().group);
}

static const bool hg_quant_follows_isa =
    (hg::cpu::on_cpu_isa_change(&hg::cpu::register_quant_kernels), true);

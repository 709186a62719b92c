// AVX512-VNNI kernels (compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq
// -mavx512vnni -mfma; only called after a runtime CPU feature check).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "generic.h"
#include "jaxq_cpu.h"

namespace jaxq {
namespace avx512 {
namespace {

inline __m512i broadcast_u8x4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// acc[MR][NV * 16] = A[MR rows] . panel, over k4 groups of 4. The accumulators are named
// variables, not an array: GCC keeps an array of vectors in memory and reloads it every
// iteration.
#define JAXQ_DP(r, v)                                                         \
  if constexpr (NV > v) c##r##v = _mm512_dpbusd_epi32(c##r##v, a##r, b##v);
#define JAXQ_ROW(r)                                                           \
  if constexpr (MR > r) {                                                     \
    const __m512i a##r = broadcast_u8x4(A + r * lda + 4 * k);                 \
    JAXQ_DP(r, 0) JAXQ_DP(r, 1) JAXQ_DP(r, 2) JAXQ_DP(r, 3)                   \
  }
#define JAXQ_PROW(r)                                                          \
  if constexpr (MR > r) {                                                     \
    const __m512i a##r = broadcast_u8x4(P[r] + 4 * k);                         \
    JAXQ_DP(r, 0) JAXQ_DP(r, 1) JAXQ_DP(r, 2) JAXQ_DP(r, 3)                   \
  }
#define JAXQ_STORE1(r, v) \
  if constexpr (NV > v) _mm512_storeu_si512(C + r * kPanel + 16 * v, c##r##v);
#define JAXQ_STORE(r) \
  if constexpr (MR > r) { JAXQ_STORE1(r, 0) JAXQ_STORE1(r, 1) JAXQ_STORE1(r, 2) JAXQ_STORE1(r, 3) }

template <int MR, int NV>
void tile(const uint8_t* A, int64_t lda, const int8_t* panel, int64_t k4, int32_t* C) {
  const __m512i z = _mm512_setzero_si512();
  __m512i c00 = z, c01 = z, c02 = z, c03 = z, c10 = z, c11 = z, c12 = z, c13 = z;
  __m512i c20 = z, c21 = z, c22 = z, c23 = z, c30 = z, c31 = z, c32 = z, c33 = z;
  __m512i c40 = z, c41 = z, c42 = z, c43 = z, c50 = z, c51 = z, c52 = z, c53 = z;
  const int8_t* b = panel;
  for (int64_t k = 0; k < k4; ++k, b += NV * 64) {
    const __m512i b0 = _mm512_loadu_si512(b);
    const __m512i b1 = NV > 1 ? _mm512_loadu_si512(b + 64) : z;
    const __m512i b2 = NV > 2 ? _mm512_loadu_si512(b + 128) : z;
    const __m512i b3 = NV > 3 ? _mm512_loadu_si512(b + 192) : z;
    JAXQ_ROW(0) JAXQ_ROW(1) JAXQ_ROW(2) JAXQ_ROW(3) JAXQ_ROW(4) JAXQ_ROW(5)
  }
  JAXQ_STORE(0) JAXQ_STORE(1) JAXQ_STORE(2) JAXQ_STORE(3) JAXQ_STORE(4) JAXQ_STORE(5)
}
// The same tile over a list of K segments (implicit-GEMM conv: one segment per kernel tap);
// row r of segment s starts at ptrs[s * MR + r], and the packed panel runs on across
// segments.
template <int MR, int NV>
void tile_ptrs(const uint8_t* const* ptrs, int nseg, int64_t seg_k4, const int8_t* panel,
               int32_t* C) {
  const __m512i z = _mm512_setzero_si512();
  __m512i c00 = z, c01 = z, c02 = z, c03 = z, c10 = z, c11 = z, c12 = z, c13 = z;
  __m512i c20 = z, c21 = z, c22 = z, c23 = z, c30 = z, c31 = z, c32 = z, c33 = z;
  __m512i c40 = z, c41 = z, c42 = z, c43 = z, c50 = z, c51 = z, c52 = z, c53 = z;
  const int8_t* b = panel;
  for (int s = 0; s < nseg; ++s) {
    const uint8_t* const* P = ptrs + s * MR;
    for (int64_t k = 0; k < seg_k4; ++k, b += NV * 64) {
      const __m512i b0 = _mm512_loadu_si512(b);
      const __m512i b1 = NV > 1 ? _mm512_loadu_si512(b + 64) : z;
      const __m512i b2 = NV > 2 ? _mm512_loadu_si512(b + 128) : z;
      const __m512i b3 = NV > 3 ? _mm512_loadu_si512(b + 192) : z;
      JAXQ_PROW(0) JAXQ_PROW(1) JAXQ_PROW(2) JAXQ_PROW(3) JAXQ_PROW(4) JAXQ_PROW(5)
    }
  }
  JAXQ_STORE(0) JAXQ_STORE(1) JAXQ_STORE(2) JAXQ_STORE(3) JAXQ_STORE(4) JAXQ_STORE(5)
}
#undef JAXQ_PROW
#undef JAXQ_DP
#undef JAXQ_ROW
#undef JAXQ_STORE1
#undef JAXQ_STORE

// One row: four accumulator sets over consecutive k4 steps hide the VPDPBUSD latency.
#define JAXQ_DP1(set, v)                                                       \
  if constexpr (NV > v)                                                        \
    s##set##v = _mm512_dpbusd_epi32(s##set##v, a##set,                          \
                                    _mm512_loadu_si512(b + (set * NV + v) * 64));
#define JAXQ_SET(set)                                                          \
  {                                                                            \
    const __m512i a##set = broadcast_u8x4(A + 4 * (k + set));                  \
    JAXQ_DP1(set, 0) JAXQ_DP1(set, 1) JAXQ_DP1(set, 2) JAXQ_DP1(set, 3)        \
  }
#define JAXQ_SUM(v)                                                            \
  if constexpr (NV > v)                                                        \
    _mm512_storeu_si512(C + 16 * v, _mm512_add_epi32(_mm512_add_epi32(s0##v, s1##v), \
                                                     _mm512_add_epi32(s2##v, s3##v)));
template <int NV>
void tile_row(const uint8_t* A, int64_t, const int8_t* panel, int64_t k4, int32_t* C) {
  const __m512i z = _mm512_setzero_si512();
  __m512i s00 = z, s01 = z, s02 = z, s03 = z, s10 = z, s11 = z, s12 = z, s13 = z;
  __m512i s20 = z, s21 = z, s22 = z, s23 = z, s30 = z, s31 = z, s32 = z, s33 = z;
  const int8_t* b = panel;
  int64_t k = 0;
  for (; k + 4 <= k4; k += 4, b += 4 * NV * 64) {
    _mm_prefetch(reinterpret_cast<const char*>(b) + 2048, _MM_HINT_T0);
    JAXQ_SET(0) JAXQ_SET(1) JAXQ_SET(2) JAXQ_SET(3)
  }
  for (; k < k4; ++k, b += NV * 64) JAXQ_SET(0)
  JAXQ_SUM(0) JAXQ_SUM(1) JAXQ_SUM(2) JAXQ_SUM(3)
}
#undef JAXQ_DP1
#undef JAXQ_SET
#undef JAXQ_SUM

using SegTileFn = void (*)(const uint8_t* const*, int, int64_t, const int8_t*, int32_t*);

template <int NV>
SegTileFn pick_seg_mr(int mr) {
  switch (mr) {
    case 1: return tile_ptrs<1, NV>;
    case 2: return tile_ptrs<2, NV>;
    case 3: return tile_ptrs<3, NV>;
    case 4: return tile_ptrs<4, NV>;
    case 5: return tile_ptrs<5, NV>;
    default: return tile_ptrs<6, NV>;
  }
}

SegTileFn pick_seg(int mr, int nv) {
  switch (nv) {
    case 1: return pick_seg_mr<1>(mr);
    case 2: return pick_seg_mr<2>(mr);
    case 3: return pick_seg_mr<3>(mr);
    default: return pick_seg_mr<4>(mr);
  }
}

inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1);
}

// generic.h's epilogue_row for the rows [m, m + mr) of one tile (row r's accumulators at
// C + r * kPanel), 16 columns at a time, with the same operations and rounding. The
// per-column parameters are loaded once per tile, not once per row.
void epilogue_tile_avx512(const GemmArgs& g, int64_t m, int mr, int64_t n0, int64_t nc,
                          const int32_t* C) {
  const __m512i zero = _mm512_setzero_si512();
  const int32_t lo = g.relu ? g.out_zp : g.qlo;
  for (int64_t j = 0; j < nc; j += 16) {
    const __mmask16 mask = tail_mask(nc - j);
    const bool full = nc - j >= 16;
    const int64_t col = n0 + j;
    const __m512i col_term =
        _mm512_maskz_loadu_epi32(mask, g.col_offset ? g.col_offset + col : g.col_sums + col);
    const __m512i zw = !g.zw ? zero
                       : g.zw_stride ? _mm512_maskz_loadu_epi32(mask, g.zw + col)
                                     : _mm512_set1_epi32(g.zw[0]);
    // float output: weight scale and bias; requantized output: multiplier and bias / scale.
    __m512 p0 = _mm512_setzero_ps(), p1 = _mm512_setzero_ps();
    if (g.out_kind == kOutF32) {
      p0 = g.sw_stride ? _mm512_maskz_loadu_ps(mask, g.sw + col) : _mm512_set1_ps(g.sw[0]);
      if (g.bias) p1 = _mm512_maskz_loadu_ps(mask, g.bias + col);
    } else if (g.out_kind != kOutInt32) {
      p0 = _mm512_maskz_loadu_ps(mask, g.rq_mult + col);
      if (g.rq_bias) p1 = _mm512_maskz_loadu_ps(mask, g.rq_bias + col);
    }
    for (int r = 0; r < mr; ++r) {
      const int64_t row = m + r;
      const int32_t zx = g.zx_row ? g.zx_row[row] : g.zx;
      __m512i v = _mm512_loadu_si512(C + r * kPanel + j);
      v = _mm512_add_epi32(v, g.col_offset ? col_term
                                           : _mm512_mullo_epi32(
                                                 _mm512_set1_epi32(wrap_mul(-1, zx)), col_term));
      if (g.zw) {
        const int32_t b = wrap_add(wrap_mul(static_cast<int32_t>(g.K), zx),
                                   wrap_mul(-1, g.row_sums[row]));
        v = _mm512_add_epi32(v, _mm512_mullo_epi32(_mm512_set1_epi32(b), zw));
      }
      const int64_t at = row * g.N + col;
      switch (g.out_kind) {
        case kOutInt32: {
          int32_t* dst = static_cast<int32_t*>(g.out) + at;
          if (full) {
            _mm512_storeu_si512(dst, v);
          } else {
            _mm512_mask_storeu_epi32(dst, mask, v);
          }
          break;
        }
        case kOutF32: {
          const float sx = g.sx_row ? g.sx_row[row] : g.sx;
          const __m512 mult = _mm512_mul_ps(_mm512_set1_ps(sx), p0);
          const __m512 value = _mm512_cvtepi32_ps(v);
          __m512 y = g.bias ? _mm512_fmadd_ps(value, mult, p1) : _mm512_mul_ps(value, mult);
          if (g.relu) y = _mm512_max_ps(y, _mm512_setzero_ps());
          float* dst = static_cast<float*>(g.out) + at;
          if (full) {
            _mm512_storeu_ps(dst, y);
          } else {
            _mm512_mask_storeu_ps(dst, mask, y);
          }
          break;
        }
        default: {
          __m512 value = _mm512_cvtepi32_ps(v);
          if (g.rq_bias) value = _mm512_add_ps(value, p1);
          __m512 scaled = _mm512_mul_ps(value, p0);
          scaled = _mm512_min_ps(_mm512_max_ps(scaled, _mm512_set1_ps(-2147483648.0f)),
                                 _mm512_set1_ps(2147483392.0f));
          __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(scaled), _mm512_set1_epi32(g.out_zp));
          q = _mm512_min_epi32(_mm512_max_epi32(q, _mm512_set1_epi32(lo)),
                               _mm512_set1_epi32(g.qhi));
          const __m128i bytes = _mm512_cvtepi32_epi8(q);
          int8_t* dst = static_cast<int8_t*>(g.out) + at;
          if (full) {
            _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), bytes);
          } else {
            _mm_mask_storeu_epi8(dst, mask, bytes);
          }
        }
      }
    }
  }
}

using TileFn = void (*)(const uint8_t*, int64_t, const int8_t*, int64_t, int32_t*);
constexpr int kMR = 6;

template <int NV>
TileFn pick_mr(int mr) {
  switch (mr) {
    case 1: return tile_row<NV>;
    case 2: return tile<2, NV>;
    case 3: return tile<3, NV>;
    case 4: return tile<4, NV>;
    case 5: return tile<5, NV>;
    default: return tile<6, NV>;
  }
}

TileFn pick(int mr, int nv) {
  switch (nv) {
    case 1: return pick_mr<1>(mr);
    case 2: return pick_mr<2>(mr);
    case 3: return pick_mr<3>(mr);
    default: return pick_mr<4>(mr);
  }
}

inline float hsum4(const float* v) { return (v[0] + v[1]) + (v[2] + v[3]); }

}  // namespace

void gemm(const GemmArgs& g, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  const int64_t k4 = g.Kp / 4;
  const int64_t block = gemm_row_block(g.Kp);
  alignas(64) int32_t C[kMR * kPanel];
  for (int64_t mb = m0; mb < m1; mb += block) {
    const int64_t me = std::min(mb + block, m1);
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t wp = panel_width(g, p);
      const int nv = static_cast<int>(wp / 16);
      const int8_t* panel = g.B + kPanel * p * g.Kp;
      const int64_t n0 = kPanel * p;
      const int64_t nc = std::min<int64_t>(kPanel, g.N - n0);
      for (int64_t m = mb; m < me; m += kMR) {
        const int mr = static_cast<int>(std::min<int64_t>(kMR, me - m));
        pick(mr, nv)(g.A + m * g.lda, g.lda, panel, k4, C);
        epilogue_tile_avx512(g, m, mr, n0, nc, C);
      }
    }
  }
}

// Conv rows [m0, m1) in tiles of 6 output pixels, read in place (implicit GEMM): row r of
// tap (i, j) points into the input, or at a row of zero-point bytes where the window
// leaves the image. With zero points on the weight (row sums needed) or C % 4 != 0 the
// tile is gathered into `scratch` (im2col) instead.
void conv_rows(const GemmArgs& base, const ConvGeometry& cg, int64_t m0, int64_t m1,
               uint8_t* scratch, int32_t* sums) {
  const int64_t panels = (base.N + kPanel - 1) / kPanel;
  const int64_t taps = cg.kh * cg.kw;
  const bool in_place = base.zw == nullptr && cg.c % 4 == 0;
  thread_local std::vector<const uint8_t*> ptrs;
  thread_local std::vector<uint8_t> pad_row;
  thread_local std::vector<int64_t> tap_offset;
  if (in_place) {
    ptrs.resize(taps * kMR);
    pad_row.assign(cg.c, cg.pad);
    tap_offset.resize(taps);
    for (int64_t i = 0; i < cg.kh; ++i) {
      for (int64_t j = 0; j < cg.kw; ++j) {
        tap_offset[i * cg.kw + j] = (i * cg.dh * cg.w + j * cg.dw) * cg.c;
      }
    }
  }
  alignas(64) int32_t C[kMR * kPanel];
  const int64_t plane = cg.out_h * cg.out_w;
  const int64_t span_h = (cg.kh - 1) * cg.dh, span_w = (cg.kw - 1) * cg.dw;
  // Output position of row m, advanced row by row (no divisions per tile).
  int64_t img = m0 / plane, oh = (m0 % plane) / cg.out_w, ow = (m0 % plane) % cg.out_w;
  for (int64_t m = m0; m < m1; m += kMR) {
    const int mr = static_cast<int>(std::min<int64_t>(kMR, m1 - m));
    GemmArgs g = base;
    g.M = mr;
    g.out = static_cast<uint8_t*>(base.out) + m * base.N * cg.out_elem;
    if (in_place) {
      for (int r = 0; r < mr; ++r) {
        const int64_t ih0 = oh * cg.sh - cg.pt, iw0 = ow * cg.sw - cg.pl;
        if (ih0 >= 0 && ih0 + span_h < cg.h && iw0 >= 0 && iw0 + span_w < cg.w) {
          const uint8_t* corner = cg.x + ((img * cg.h + ih0) * cg.w + iw0) * cg.c;
          for (int64_t t = 0; t < taps; ++t) ptrs[t * mr + r] = corner + tap_offset[t];
        } else {  // the window crosses the border: zero-point bytes outside the image
          for (int64_t i = 0; i < cg.kh; ++i) {
            const int64_t ih = ih0 + i * cg.dh;
            for (int64_t j = 0; j < cg.kw; ++j) {
              const int64_t iw = iw0 + j * cg.dw;
              const bool inside = ih >= 0 && ih < cg.h && iw >= 0 && iw < cg.w;
              ptrs[(i * cg.kw + j) * mr + r] =
                  inside ? cg.x + ((img * cg.h + ih) * cg.w + iw) * cg.c : pad_row.data();
            }
          }
        }
        if (++ow == cg.out_w) {
          ow = 0;
          if (++oh == cg.out_h) {
            oh = 0;
            ++img;
          }
        }
      }
    } else {
      for (int r = 0; r < mr; ++r) sums[r] = im2col_row(cg, m + r, base.Kp, scratch + r * base.Kp);
      g.row_sums = sums;
    }
    for (int64_t p = 0; p < panels; ++p) {
      const int64_t wp = panel_width(base, p);
      const int nv = static_cast<int>(wp / 16);
      const int8_t* panel = base.B + kPanel * p * base.Kp;
      const int64_t n0 = kPanel * p;
      const int64_t nc = std::min<int64_t>(kPanel, base.N - n0);
      if (in_place) {
        pick_seg(mr, nv)(ptrs.data(), static_cast<int>(taps), cg.c / 4, panel, C);
      } else {
        pick(mr, nv)(scratch, base.Kp, panel, base.Kp / 4, C);
      }
      epilogue_tile_avx512(g, 0, mr, n0, nc, C);
    }
  }
}

namespace {

// Dot products of one row of x with the (up to) 64 columns of one panel. Lane (4c + t)
// of accumulator j holds column 4j + c at k offset t; out[c] gets the column sums.
#define JAXQ_W8(j)                                                              \
  if constexpr (4 * NV > j)                                                     \
    q##j = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128( \
                               reinterpret_cast<const __m128i*>(b + 16 * j)))),   \
                           xv, q##j);
#define JAXQ_W8_STORE(j) \
  if constexpr (4 * NV > j) _mm512_store_ps(lanes[j], q##j);
template <int NV>
void dot_panel_int8(const float* x, const int8_t* panel, int64_t k4, float* out) {
  const __m512 z = _mm512_setzero_ps();
  __m512 q0 = z, q1 = z, q2 = z, q3 = z, q4 = z, q5 = z, q6 = z, q7 = z;
  __m512 q8 = z, q9 = z, q10 = z, q11 = z, q12 = z, q13 = z, q14 = z, q15 = z;
  const int8_t* b = panel;
  for (int64_t k = 0; k < k4; ++k, b += 64 * NV) {
    const __m512 xv = _mm512_broadcast_f32x4(_mm_loadu_ps(x + 4 * k));
    JAXQ_W8(0) JAXQ_W8(1) JAXQ_W8(2) JAXQ_W8(3) JAXQ_W8(4) JAXQ_W8(5) JAXQ_W8(6) JAXQ_W8(7)
    JAXQ_W8(8) JAXQ_W8(9) JAXQ_W8(10) JAXQ_W8(11) JAXQ_W8(12) JAXQ_W8(13) JAXQ_W8(14)
    JAXQ_W8(15)
  }
  alignas(64) float lanes[16][16];
  JAXQ_W8_STORE(0) JAXQ_W8_STORE(1) JAXQ_W8_STORE(2) JAXQ_W8_STORE(3) JAXQ_W8_STORE(4)
  JAXQ_W8_STORE(5) JAXQ_W8_STORE(6) JAXQ_W8_STORE(7) JAXQ_W8_STORE(8) JAXQ_W8_STORE(9)
  JAXQ_W8_STORE(10) JAXQ_W8_STORE(11) JAXQ_W8_STORE(12) JAXQ_W8_STORE(13) JAXQ_W8_STORE(14)
  JAXQ_W8_STORE(15)
  for (int c = 0; c < 16 * NV; ++c) out[c] = hsum4(&lanes[c / 4][4 * (c % 4)]);
}
#undef JAXQ_W8
#undef JAXQ_W8_STORE

void weight_only_int8(const WeightOnlyArgs& w, int64_t c0, int64_t c1) {
  const int64_t nq = round_up(w.N, 16);
  const int64_t k4 = w.Kp / 4;
  float dots[kPanel];
  for (int64_t p = c0; p < c1; ++p) {
    const int64_t n0 = kPanel * p;
    const int64_t nc = std::min<int64_t>(kPanel, w.N - n0);
    const int nv = static_cast<int>(std::min<int64_t>(kPanel, nq - n0) / 16);
    const int8_t* panel = w.B + kPanel * p * w.Kp;
    for (int64_t m = 0; m < w.M; ++m) {
      const float* x = w.x + m * w.ldx;  // rows padded to a multiple of 4 by the caller
      switch (nv) {
        case 1: dot_panel_int8<1>(x, panel, k4, dots); break;
        case 2: dot_panel_int8<2>(x, panel, k4, dots); break;
        case 3: dot_panel_int8<3>(x, panel, k4, dots); break;
        default: dot_panel_int8<4>(x, panel, k4, dots); break;
      }
      float* out = w.out + m * w.N + n0;
      const float xsum = w.zp ? w.xsum[m] : 0.0f;
      for (int64_t c = 0; c < nc; ++c) {
        const int64_t idx = (n0 + c) * w.param_stride_n;
        float v = dots[c];
        if (w.zp) v = v - float(w.zp[idx]) * xsum;
        float y = v * w.scale[idx];
        if (w.bias) y = y + w.bias[n0 + c];
        if (w.relu) y = std::max(y, 0.0f);
        out[c] = y;
      }
    }
  }
}

// x[k] * nibble summed over k in [k0, k1) for NB blocks of 16 columns (the "cpu_wo4"
// layout: a 32-bit word per column holds 8 consecutive k, nibble t at bits 4t; block b's
// words for k = 8j .. 8j + 7 are the 64 bytes at (b * kq8 + j) * 64). VPERMPS reads only
// the low 4 bits of each index lane, so one shift and one permutation of the table
// 0..15 turn a nibble of every lane into its float: whole words take 8 k in 8 such
// steps; k0 and k1 need not be multiples of 8 (the partial words go k by k). Two
// accumulators per block (even and odd k) keep two FMA chains in flight.
#define JAXQ_NIBBLE(d, t) _mm512_permutexvar_ps(_mm512_srli_epi32(d, 4 * (t)), values)
#define JAXQ_WORD(v)                                                                   \
  if constexpr (NB > v) {                                                              \
    const __m512i d = _mm512_loadu_si512(B + ((block0 + v) * kq8 + k / 8) * 64);       \
    ev##v = _mm512_fmadd_ps(_mm512_permutexvar_ps(d, values), x0, ev##v);              \
    od##v = _mm512_fmadd_ps(JAXQ_NIBBLE(d, 1), x1, od##v);                              \
    ev##v = _mm512_fmadd_ps(JAXQ_NIBBLE(d, 2), x2, ev##v);                              \
    od##v = _mm512_fmadd_ps(JAXQ_NIBBLE(d, 3), x3, od##v);                              \
    ev##v = _mm512_fmadd_ps(JAXQ_NIBBLE(d, 4), x4, ev##v);                              \
    od##v = _mm512_fmadd_ps(JAXQ_NIBBLE(d, 5), x5, od##v);                              \
    ev##v = _mm512_fmadd_ps(JAXQ_NIBBLE(d, 6), x6, ev##v);                              \
    od##v = _mm512_fmadd_ps(JAXQ_NIBBLE(d, 7), x7, od##v);                              \
  }
#define JAXQ_ONE_K(v)                                                                  \
  if constexpr (NB > v) {                                                              \
    const __m512i d = _mm512_loadu_si512(B + ((block0 + v) * kq8 + k / 8) * 64);       \
    ev##v = _mm512_fmadd_ps(                                                           \
        _mm512_permutexvar_ps(_mm512_srl_epi32(d, _mm_cvtsi32_si128(4 * (k % 8))), values), \
        xk, ev##v);                                                                    \
  }
template <int NB>
void group_int4(const float* x, const int8_t* B, int64_t kq8, int64_t block0, int64_t k0,
                int64_t k1, __m512* part) {
  const __m512 values = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512 z = _mm512_setzero_ps();
  __m512 ev0 = z, ev1 = z, ev2 = z, ev3 = z, od0 = z, od1 = z, od2 = z, od3 = z;
  int64_t k = k0;
  for (; k < k1 && k % 8; ++k) {
    const __m512 xk = _mm512_set1_ps(x[k]);
    JAXQ_ONE_K(0) JAXQ_ONE_K(1) JAXQ_ONE_K(2) JAXQ_ONE_K(3)
  }
  for (; k + 8 <= k1; k += 8) {
    const __m512 x0 = _mm512_set1_ps(x[k]), x1 = _mm512_set1_ps(x[k + 1]);
    const __m512 x2 = _mm512_set1_ps(x[k + 2]), x3 = _mm512_set1_ps(x[k + 3]);
    const __m512 x4 = _mm512_set1_ps(x[k + 4]), x5 = _mm512_set1_ps(x[k + 5]);
    const __m512 x6 = _mm512_set1_ps(x[k + 6]), x7 = _mm512_set1_ps(x[k + 7]);
    JAXQ_WORD(0) JAXQ_WORD(1) JAXQ_WORD(2) JAXQ_WORD(3)
  }
  for (; k < k1; ++k) {
    const __m512 xk = _mm512_set1_ps(x[k]);
    JAXQ_ONE_K(0) JAXQ_ONE_K(1) JAXQ_ONE_K(2) JAXQ_ONE_K(3)
  }
  part[0] = _mm512_add_ps(ev0, od0);
  if constexpr (NB > 1) part[1] = _mm512_add_ps(ev1, od1);
  if constexpr (NB > 2) part[2] = _mm512_add_ps(ev2, od2);
  if constexpr (NB > 3) part[3] = _mm512_add_ps(ev3, od3);
}
#undef JAXQ_NIBBLE
#undef JAXQ_WORD
#undef JAXQ_ONE_K

void weight_only_int4(const WeightOnlyArgs& w, int64_t c0, int64_t c1) {
  const int64_t nq = round_up(w.N, 16);
  const int64_t kq8 = round_up(w.K, 8) / 8;
  const int64_t groups = w.num_groups;
  // The panel's scales and zero points, group-major ([group][64 columns], zero past N):
  // per-group parameters of 16 columns are then one load, not a gather (the gathers
  // took ~15% of a group-128 matrix-vector product).
  thread_local std::vector<float> scale_t, zp_t;
  scale_t.resize(groups * kPanel);
  zp_t.resize(groups * kPanel);
  for (int64_t p = c0; p < c1; ++p) {
    const int64_t n0 = kPanel * p;
    const int nb = static_cast<int>(std::min<int64_t>(kPanel, nq - n0) / 16);
    const int64_t block0 = n0 / 16;
    for (int64_t g = 0; g < groups; ++g) {
      for (int64_t c = 0; c < kPanel; ++c) {
        const int64_t n = n0 + c;
        const int64_t at = n * w.param_stride_n + (w.param_stride_n ? g : 0);
        scale_t[g * kPanel + c] = n < w.N ? w.scale[at] : 0.0f;
        zp_t[g * kPanel + c] = n < w.N && w.zp ? static_cast<float>(w.zp[at]) : 0.0f;
      }
    }
    for (int64_t m = 0; m < w.M; ++m) {
      const float* x = w.x + m * w.ldx;
      __m512 total[4];
      for (int v = 0; v < 4; ++v) total[v] = _mm512_setzero_ps();
      for (int64_t g = 0; g < groups; ++g) {
        __m512 part[4];
        const int64_t k0 = g * w.group_size, k1 = k0 + w.group_size;
        switch (nb) {
          case 1: group_int4<1>(x, w.B, kq8, block0, k0, k1, part); break;
          case 2: group_int4<2>(x, w.B, kq8, block0, k0, k1, part); break;
          case 3: group_int4<3>(x, w.B, kq8, block0, k0, k1, part); break;
          default: group_int4<4>(x, w.B, kq8, block0, k0, k1, part); break;
        }
        const float* scale = scale_t.data() + g * kPanel;
        const float* zp = zp_t.data() + g * kPanel;
        for (int v = 0; v < nb; ++v) {
          __m512 sum = part[v];
          if (w.zp) {
            sum = _mm512_fnmadd_ps(_mm512_loadu_ps(zp + 16 * v),
                                   _mm512_set1_ps(w.xsum[m * groups + g]), sum);
          }
          total[v] = _mm512_fmadd_ps(sum, _mm512_loadu_ps(scale + 16 * v), total[v]);
        }
      }
      for (int v = 0; v < nb; ++v) {
        const int64_t nv0 = n0 + 16 * v;
        if (nv0 >= w.N) break;
        const __mmask16 valid = tail_mask(w.N - nv0);
        __m512 y = total[v];
        if (w.bias) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(valid, w.bias + nv0));
        if (w.relu) y = _mm512_max_ps(y, _mm512_setzero_ps());
        _mm512_mask_storeu_ps(w.out + m * w.N + nv0, valid, y);
      }
    }
  }
}

}  // namespace

void weight_only(const WeightOnlyArgs& w, int64_t c0, int64_t c1) {
  if (w.bits == 8) {
    weight_only_int8(w, c0, c1);
  } else {
    weight_only_int4(w, c0, c1);
  }
}

namespace {

// 16 floats -> int32 q = clamp(rint(fma(x, inv_scale, zp)), qlo, qhi), NaN -> 0. Clamping
// before rounding gives the same integers (the bounds are integers) and keeps the
// conversion in range; NaN lanes are zeroed by the conversion's mask.
inline __m512i quantize16(__m512 v, __m512 inv, __m512 zp, __m512 lo, __m512 hi) {
  const __m512 t = _mm512_fmadd_ps(v, inv, zp);
  const __mmask16 ordered = _mm512_cmp_ps_mask(t, t, _CMP_ORD_Q);
  return _mm512_maskz_cvt_roundps_epi32(ordered, _mm512_min_ps(_mm512_max_ps(t, lo), hi),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

}  // namespace

void quantize_rows(const QuantizeArgs& q) {
  const __m512 inv = _mm512_set1_ps(q.inv_scale);
  const __m512 zp = _mm512_set1_ps(q.zp);
  const __m512 lo = _mm512_set1_ps(static_cast<float>(q.qlo));
  const __m512 hi = _mm512_set1_ps(static_cast<float>(q.qhi));
  const __m512i offset = _mm512_set1_epi32(q.offset);
  // Blocks of 64 values go to bytes by two saturating packs (exact: the values are already
  // in [qlo, qhi], within int8 or uint8) and one dword permutation that undoes the packs'
  // per-128-bit-lane interleaving; the int8 domain (offset 128) is stored with its sign
  // bit flipped. Only offsets 0 and 128 take this path.
  const bool packs = q.offset == 0 || q.offset == 128;
  const bool is_signed = q.offset == 128;
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m512i sign = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i zero = _mm512_setzero_si512();
  for (int64_t r = 0; r < q.rows; ++r) {
    const float* x = q.x + r * q.K;
    uint8_t* dst = q.q + r * q.ldq;
    __m512i byte_sums = zero;  // 8 x uint64 (VPSADBW)
    __m512i sums = zero;       // 16 x int32, the tail's
    int64_t k = 0;
    if (packs) {
      for (; k + 64 <= q.K; k += 64) {
        const __m512i a = quantize16(_mm512_loadu_ps(x + k), inv, zp, lo, hi);
        const __m512i b = quantize16(_mm512_loadu_ps(x + k + 16), inv, zp, lo, hi);
        const __m512i c = quantize16(_mm512_loadu_ps(x + k + 32), inv, zp, lo, hi);
        const __m512i d = quantize16(_mm512_loadu_ps(x + k + 48), inv, zp, lo, hi);
        __m512i bytes;
        if (is_signed) {
          bytes = _mm512_packs_epi16(_mm512_packs_epi32(a, b), _mm512_packs_epi32(c, d));
          bytes = _mm512_xor_si512(_mm512_permutexvar_epi32(order, bytes), sign);
        } else {
          bytes = _mm512_packus_epi16(_mm512_packus_epi32(a, b), _mm512_packus_epi32(c, d));
          bytes = _mm512_permutexvar_epi32(order, bytes);
        }
        _mm512_storeu_si512(dst + k, bytes);
        if (q.row_sums) byte_sums = _mm512_add_epi64(byte_sums, _mm512_sad_epu8(bytes, zero));
      }
    }
    for (; k < q.K; k += 16) {
      const int64_t left = q.K - k;
      const __mmask16 mask = left >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1);
      const __m512i value = quantize16(_mm512_maskz_loadu_ps(mask, x + k), inv, zp, lo, hi);
      const __m512i stored = _mm512_maskz_add_epi32(mask, value, offset);
      sums = _mm512_add_epi32(sums, stored);
      _mm_mask_storeu_epi8(dst + k, mask, _mm512_cvtepi32_epi8(stored));
    }
    for (int64_t j = q.K; j < q.ldq; ++j) dst[j] = 0;
    if (q.row_sums) {
      q.row_sums[r] = static_cast<int32_t>(_mm512_reduce_add_epi64(byte_sums)) +
                      _mm512_reduce_add_epi32(sums);
    }
  }
}

void min_max(const float* x, int64_t n, float* mn, float* mx) {
  if (n < 16) {
    min_max_generic(x, n, mn, mx);
    return;
  }
  __m512 lo = _mm512_loadu_ps(x), hi = lo;
  int64_t i = 16;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    lo = _mm512_min_ps(lo, v);
    hi = _mm512_max_ps(hi, v);
  }
  if (i < n) {  // overlapping last vector: re-reading elements does not change min/max
    const __m512 v = _mm512_loadu_ps(x + n - 16);
    lo = _mm512_min_ps(lo, v);
    hi = _mm512_max_ps(hi, v);
  }
  *mn = _mm512_reduce_min_ps(lo);
  *mx = _mm512_reduce_max_ps(hi);
}

}  // namespace avx512
}  // namespace jaxq

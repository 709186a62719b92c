// AVX512-VNNI kernels (compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq
// -mavx512vnni -mfma; only called after a runtime CPU feature check).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

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

// acc[MR][NV * 16] = A[MR rows] . panel, over k4 groups of 4.
template <int MR, int NV>
void tile(const uint8_t* A, int64_t lda, const int8_t* panel, int64_t k4, int32_t* C) {
  __m512i acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_si512();
  const int8_t* b = panel;
  for (int64_t k = 0; k < k4; ++k, b += NV * 64) {
    __m512i bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_si512(b + 64 * v);
    for (int r = 0; r < MR; ++r) {
      const __m512i av = broadcast_u8x4(A + r * lda + 4 * k);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], av, bv[v]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) _mm512_storeu_si512(C + r * kPanel + 16 * v, acc[r][v]);
}

// One row: four accumulator sets over consecutive k4 steps hide the VPDPBUSD latency.
template <int NV>
void tile_row(const uint8_t* A, int64_t, const int8_t* panel, int64_t k4, int32_t* C) {
  constexpr int kSets = 4;
  __m512i acc[kSets][NV];
  for (int s = 0; s < kSets; ++s)
    for (int v = 0; v < NV; ++v) acc[s][v] = _mm512_setzero_si512();
  const int8_t* b = panel;
  int64_t k = 0;
  for (; k + kSets <= k4; k += kSets, b += kSets * NV * 64) {
    _mm_prefetch(reinterpret_cast<const char*>(b) + 2048, _MM_HINT_T0);
    for (int s = 0; s < kSets; ++s) {
      const __m512i av = broadcast_u8x4(A + 4 * (k + s));
      for (int v = 0; v < NV; ++v)
        acc[s][v] = _mm512_dpbusd_epi32(acc[s][v], av, _mm512_loadu_si512(b + (s * NV + v) * 64));
    }
  }
  for (; k < k4; ++k, b += NV * 64) {
    const __m512i av = broadcast_u8x4(A + 4 * k);
    for (int v = 0; v < NV; ++v)
      acc[0][v] = _mm512_dpbusd_epi32(acc[0][v], av, _mm512_loadu_si512(b + v * 64));
  }
  for (int v = 0; v < NV; ++v) {
    __m512i sum = _mm512_add_epi32(_mm512_add_epi32(acc[0][v], acc[1][v]),
                                   _mm512_add_epi32(acc[2][v], acc[3][v]));
    _mm512_storeu_si512(C + 16 * v, sum);
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
  // Rows per block: keep the block of A (rows x Kp bytes) near 192 KB of L2.
  const int64_t block = std::max<int64_t>(kMR, std::min<int64_t>(384, 196608 / g.Kp / kMR * kMR));
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
        for (int r = 0; r < mr; ++r) epilogue_row(g, m + r, n0, nc, C + r * kPanel);
      }
    }
  }
}

namespace {

void weight_only_int8(const WeightOnlyArgs& w, int64_t c0, int64_t c1) {
  const int64_t nq = round_up(w.N, 16);
  const int64_t k4 = w.Kp / 4;
  alignas(64) float lanes[16][16];
  for (int64_t p = c0; p < c1; ++p) {
    const int64_t n0 = kPanel * p;
    const int64_t nc = std::min<int64_t>(kPanel, w.N - n0);
    const int nv = static_cast<int>(std::min<int64_t>(kPanel, nq - n0) / 16);
    const int8_t* panel = w.B + kPanel * p * w.Kp;
    for (int64_t m = 0; m < w.M; ++m) {
      const float* x = w.x + m * w.ldx;  // rows padded to a multiple of 4 by the caller
      // Lane (4c + t) of accumulator j holds column 4j + c, k offset t.
      __m512 acc[16];
      for (int j = 0; j < 16; ++j) acc[j] = _mm512_setzero_ps();
      const int8_t* b = panel;
      const int groups = 4 * nv;
      for (int64_t k = 0; k < k4; ++k, b += 64 * nv) {
        const __m512 xv = _mm512_broadcast_f32x4(_mm_loadu_ps(x + 4 * k));
        if (nv == 4) {
          for (int j = 0; j < 16; ++j) {
            const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 16 * j));
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(raw)), xv, acc[j]);
          }
        } else {
          for (int j = 0; j < groups; ++j) {
            const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 16 * j));
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(raw)), xv, acc[j]);
          }
        }
      }
      for (int j = 0; j < groups; ++j) _mm512_store_ps(lanes[j], acc[j]);
      float* out = w.out + m * w.N + n0;
      const float xsum = w.zp ? w.xsum[m] : 0.0f;
      for (int64_t c = 0; c < nc; ++c) {
        const float dot = hsum4(&lanes[c / 4][4 * (c % 4)]);
        const int64_t idx = (n0 + c) * w.param_stride_n;
        float v = dot;
        if (w.zp) v = v - float(w.zp[idx]) * xsum;
        float y = v * w.scale[idx];
        if (w.bias) y = y + w.bias[n0 + c];
        if (w.relu) y = std::max(y, 0.0f);
        out[c] = y;
      }
    }
  }
}

void weight_only_int4(const WeightOnlyArgs& w, int64_t c0, int64_t c1) {
  const int64_t nq = round_up(w.N, 16);
  const int64_t half_k = w.K / 2;
  const __m512i low_mask = _mm512_set1_epi32(15);
  const __m512i lane_index = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
                                               14, 15);
  for (int64_t p = c0; p < c1; ++p) {
    const int64_t n0 = kPanel * p;
    const int nb = static_cast<int>(std::min<int64_t>(kPanel, nq - n0) / 16);
    const int64_t block0 = n0 / 16;
    for (int64_t m = 0; m < w.M; ++m) {
      const float* x = w.x + m * w.ldx;
      __m512 total[4];
      for (int v = 0; v < 4; ++v) total[v] = _mm512_setzero_ps();
      for (int64_t g = 0; g < w.num_groups; ++g) {
        __m512 lo_acc[4], hi_acc[4];
        for (int v = 0; v < 4; ++v) lo_acc[v] = hi_acc[v] = _mm512_setzero_ps();
        const int64_t j0 = g * w.group_size / 2, j1 = j0 + w.group_size / 2;
        for (int64_t j = j0; j < j1; ++j) {
          const __m512 xa = _mm512_set1_ps(x[2 * j]);
          const __m512 xb = _mm512_set1_ps(x[2 * j + 1]);
          for (int v = 0; v < nb; ++v) {
            const int8_t* src = w.B + (block0 + v) * half_k * 16 + j * 16;
            const __m512i bytes = _mm512_cvtepu8_epi32(
                _mm_loadu_si128(reinterpret_cast<const __m128i*>(src)));
            const __m512 lo = _mm512_cvtepi32_ps(_mm512_and_si512(bytes, low_mask));
            const __m512 hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(bytes, 4));
            lo_acc[v] = _mm512_fmadd_ps(lo, xa, lo_acc[v]);
            hi_acc[v] = _mm512_fmadd_ps(hi, xb, hi_acc[v]);
          }
        }
        for (int v = 0; v < nb; ++v) {
          const int64_t nv0 = n0 + 16 * v;
          const __mmask16 valid = nv0 >= w.N ? 0 : static_cast<__mmask16>(
              (w.N - nv0 >= 16) ? 0xFFFF : ((1u << (w.N - nv0)) - 1));
          const __m512i idx = _mm512_add_epi32(
              _mm512_mullo_epi32(_mm512_add_epi32(_mm512_set1_epi32(static_cast<int32_t>(nv0)),
                                                  lane_index),
                                 _mm512_set1_epi32(static_cast<int32_t>(w.param_stride_n))),
              _mm512_set1_epi32(static_cast<int32_t>(w.param_stride_n ? g : 0)));
          __m512 part = _mm512_add_ps(lo_acc[v], hi_acc[v]);
          if (w.zp) {
            const __m512i z = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), valid, idx,
                                                          w.zp, 4);
            part = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(z),
                                    _mm512_set1_ps(w.xsum[m * w.num_groups + g]), part);
          }
          const __m512 s = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, idx, w.scale, 4);
          total[v] = _mm512_fmadd_ps(part, s, total[v]);
        }
      }
      for (int v = 0; v < nb; ++v) {
        const int64_t nv0 = n0 + 16 * v;
        if (nv0 >= w.N) break;
        const __mmask16 valid = static_cast<__mmask16>(
            (w.N - nv0 >= 16) ? 0xFFFF : ((1u << (w.N - nv0)) - 1));
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

void quantize_rows(const QuantizeArgs& q) {
  const __m512 inv = _mm512_set1_ps(q.inv_scale);
  const __m512 zp = _mm512_set1_ps(q.zp);
  const __m512 lo = _mm512_set1_ps(static_cast<float>(q.qlo));
  const __m512 hi = _mm512_set1_ps(static_cast<float>(q.qhi));
  const __m512i offset = _mm512_set1_epi32(q.offset);
  for (int64_t r = 0; r < q.rows; ++r) {
    const float* x = q.x + r * q.K;
    uint8_t* dst = q.q + r * q.ldq;
    __m512i sums = _mm512_setzero_si512();
    for (int64_t k = 0; k < q.K; k += 16) {
      const int64_t left = q.K - k;
      const __mmask16 mask = left >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1);
      const __m512 v = _mm512_maskz_loadu_ps(mask, x + k);
      __m512 t = _mm512_roundscale_ps(_mm512_fmadd_ps(v, inv, zp),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __mmask16 nan = _mm512_cmp_ps_mask(t, t, _CMP_UNORD_Q);
      t = _mm512_min_ps(_mm512_max_ps(t, lo), hi);
      t = _mm512_mask_mov_ps(t, nan, _mm512_setzero_ps());
      const __m512i stored = _mm512_maskz_add_epi32(mask, _mm512_cvtps_epi32(t), offset);
      sums = _mm512_add_epi32(sums, stored);
      _mm_mask_storeu_epi8(dst + k, mask, _mm512_cvtepi32_epi8(stored));
    }
    for (int64_t k = q.K; k < q.ldq; ++k) dst[k] = 0;
    if (q.row_sums) q.row_sums[r] = _mm512_reduce_add_epi32(sums);
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

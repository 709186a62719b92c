// Portable C++ versions of the kernels (internal linkage: each ISA translation unit gets
// its own copy compiled for its instruction set, so nothing crosses ISAs at link time).
// The AVX2 build is these loops auto-vectorized; the AVX512 build uses the epilogue and
// the scalar tails from here. Every float operation is spelled out (std::fma where the
// reference has one rounding; the files are compiled with -ffp-contract=off).
#ifndef JAXQ_GENERIC_H_
#define JAXQ_GENERIC_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "jaxq_cpu.h"

namespace jaxq {
namespace {

inline int32_t wrap_add(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b));
}
inline int32_t wrap_mul(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) * static_cast<uint32_t>(b));
}

inline float clamp_for_int(float v) {
  // The XLA reference clips to [-2^31, 2^31 - 256] before converting (no UB on overflow).
  return std::min(std::max(v, -2147483648.0f), 2147483392.0f);
}

// Applies the zero-point corrections and the output stage to acc[0..nc) of row m,
// columns [n0, n0 + nc).
inline void epilogue_row(const GemmArgs& g, int64_t m, int64_t n0, int64_t nc,
                         const int32_t* acc) {
  const int32_t zx = g.zx_row ? g.zx_row[m] : g.zx;
  const int32_t a = wrap_mul(-1, zx);
  int32_t b = 0;
  if (g.zw) b = wrap_add(wrap_mul(static_cast<int32_t>(g.K), zx), wrap_mul(-1, g.row_sums[m]));
  int32_t corrected[kPanel];
  for (int64_t j = 0; j < nc; ++j) {
    int32_t v = wrap_add(acc[j], g.col_offset ? g.col_offset[n0 + j]
                                              : wrap_mul(a, g.col_sums[n0 + j]));
    if (g.zw) v = wrap_add(v, wrap_mul(b, g.zw[(n0 + j) * g.zw_stride]));
    corrected[j] = v;
  }
  const int64_t row = m * g.N + n0;
  switch (g.out_kind) {
    case kOutInt32: {
      std::memcpy(static_cast<int32_t*>(g.out) + row, corrected, nc * sizeof(int32_t));
      break;
    }
    case kOutF32: {
      float* out = static_cast<float*>(g.out) + row;
      const float sx = g.sx_row ? g.sx_row[m] : g.sx;
      for (int64_t j = 0; j < nc; ++j) {
        const float mult = sx * g.sw[(n0 + j) * g.sw_stride];
        const float value = static_cast<float>(corrected[j]);
        float y = g.bias ? std::fma(value, mult, g.bias[n0 + j]) : value * mult;
        if (g.relu) y = std::max(y, 0.0f);
        out[j] = y;
      }
      break;
    }
    default: {
      const int32_t lo = g.relu ? g.out_zp : g.qlo;
      for (int64_t j = 0; j < nc; ++j) {
        float value = static_cast<float>(corrected[j]);
        if (g.rq_bias) value = value + g.rq_bias[n0 + j];
        const float scaled = clamp_for_int(value * g.rq_mult[n0 + j]);
        int32_t q = wrap_add(static_cast<int32_t>(std::nearbyint(scaled)), g.out_zp);
        q = std::min(std::max(q, lo), g.qhi);
        if (g.out_kind == kOutU8) {
          static_cast<uint8_t*>(g.out)[row + j] = static_cast<uint8_t>(q);
        } else {
          static_cast<int8_t*>(g.out)[row + j] = static_cast<int8_t>(q);
        }
      }
    }
  }
}

inline int64_t panel_width(const GemmArgs& g, int64_t p) {
  return std::min<int64_t>(kPanel, round_up(g.N, 16) - kPanel * p);
}

// Rows [m0, m1) x panels [p0, p1), plain loops.
inline void gemm_generic(const GemmArgs& g, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  const int64_t k4 = g.Kp / 4;
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t wp = panel_width(g, p);
    const int8_t* panel = g.B + kPanel * p * g.Kp;
    const int64_t n0 = kPanel * p;
    const int64_t nc = std::min<int64_t>(kPanel, g.N - n0);
    for (int64_t m = m0; m < m1; ++m) {
      int32_t acc[kPanel] = {0};
      const uint8_t* a = g.A + m * g.lda;
      for (int64_t kk = 0; kk < k4; ++kk) {
        const int8_t* b = panel + kk * wp * 4;
        const int32_t a0 = a[4 * kk], a1 = a[4 * kk + 1], a2 = a[4 * kk + 2],
                      a3 = a[4 * kk + 3];
        for (int64_t c = 0; c < wp; ++c) {
          acc[c] += a0 * b[4 * c] + a1 * b[4 * c + 1] + a2 * b[4 * c + 2] + a3 * b[4 * c + 3];
        }
      }
      epilogue_row(g, m, n0, nc, acc);
    }
  }
}

// Weight-only for panels [c0, c1) of 64 columns, plain loops.
inline void weight_only_generic(const WeightOnlyArgs& w, int64_t c0, int64_t c1) {
  const int64_t nq = round_up(w.N, 16);
  for (int64_t p = c0; p < c1; ++p) {
    const int64_t n0 = kPanel * p;
    const int64_t nc = std::min<int64_t>(kPanel, w.N - n0);
    const int64_t wp = std::min<int64_t>(kPanel, nq - n0);
    for (int64_t m = 0; m < w.M; ++m) {
      const float* x = w.x + m * w.ldx;
      float total[kPanel] = {0};
      for (int64_t g = 0; g < w.num_groups; ++g) {
        float part[kPanel] = {0};
        const int64_t k0 = g * w.group_size, k1 = k0 + w.group_size;
        if (w.bits == 8) {
          const int8_t* panel = w.B + kPanel * p * w.Kp;
          for (int64_t k = k0; k < k1; ++k) {
            const int8_t* b = panel + (k / 4) * wp * 4 + (k % 4);
            for (int64_t c = 0; c < wp; ++c) part[c] = std::fma(x[k], float(b[4 * c]), part[c]);
          }
        } else {
          for (int64_t k = k0; k < k1; ++k) {
            for (int64_t c = 0; c < wp; ++c) {
              const int64_t block = (n0 + c) / 16, lane = (n0 + c) % 16;
              const int64_t word = (block * (round_up(w.K, 8) / 8) + k / 8) * 16 + lane;
              const uint8_t byte = static_cast<uint8_t>(w.B[word * 4 + (k % 8) / 2]);
              const int u = (k % 2) ? (byte >> 4) : (byte & 15);
              part[c] = std::fma(x[k], float(u), part[c]);
            }
          }
        }
        for (int64_t c = 0; c < nc; ++c) {
          const int64_t idx = (n0 + c) * w.param_stride_n + g;
          const int64_t pidx = w.param_stride_n ? idx : 0;
          float v = part[c];
          if (w.zp) v = v - float(w.zp[pidx]) * w.xsum[m * w.num_groups + g];
          total[c] = std::fma(v, w.scale[pidx], total[c]);
        }
      }
      float* out = w.out + m * w.N + n0;
      for (int64_t c = 0; c < nc; ++c) {
        float y = total[c];
        if (w.bias) y = y + w.bias[n0 + c];
        if (w.relu) y = std::max(y, 0.0f);
        out[c] = y;
      }
    }
  }
}

// Gathers output pixel m's patch in (kh, kw, c) order into dst (zero-padded to Kp);
// returns the sum of the Kp bytes.
inline int32_t im2col_row(const ConvGeometry& cg, int64_t m, int64_t kp, uint8_t* dst) {
  const int64_t img = m / (cg.out_h * cg.out_w), pix = m % (cg.out_h * cg.out_w);
  const int64_t oh = pix / cg.out_w, ow = pix % cg.out_w;
  uint8_t* out = dst;
  for (int64_t i = 0; i < cg.kh; ++i) {
    const int64_t ih = oh * cg.sh - cg.pt + i * cg.dh;
    for (int64_t j = 0; j < cg.kw; ++j, out += cg.c) {
      const int64_t iw = ow * cg.sw - cg.pl + j * cg.dw;
      if (ih < 0 || ih >= cg.h || iw < 0 || iw >= cg.w) {
        std::memset(out, cg.pad, cg.c);
      } else {
        std::memcpy(out, cg.x + ((img * cg.h + ih) * cg.w + iw) * cg.c, cg.c);
      }
    }
  }
  const int64_t k = cg.kh * cg.kw * cg.c;
  for (int64_t q = k; q < kp; ++q) dst[q] = 0;
  int32_t sum = 0;
  for (int64_t q = 0; q < k; ++q) sum += dst[q];
  return sum;
}

// Rows [m0, m1) of a conv: im2col of up to 6 rows at a time, then the GEMM on them.
inline void conv_rows_generic(const GemmArgs& base, const ConvGeometry& cg, int64_t m0,
                              int64_t m1, uint8_t* scratch, int32_t* sums) {
  const int64_t panels = (base.N + kPanel - 1) / kPanel;
  for (int64_t m = m0; m < m1; m += 6) {
    const int64_t mr = std::min<int64_t>(6, m1 - m);
    for (int64_t r = 0; r < mr; ++r) sums[r] = im2col_row(cg, m + r, base.Kp, scratch + r * base.Kp);
    GemmArgs g = base;
    g.M = mr;
    g.A = scratch;
    g.lda = base.Kp;
    g.row_sums = sums;
    g.out = static_cast<uint8_t*>(base.out) + m * base.N * cg.out_elem;
    gemm_generic(g, 0, mr, 0, panels);
  }
}

inline void quantize_rows_generic(const QuantizeArgs& q) {
  for (int64_t r = 0; r < q.rows; ++r) {
    const float* x = q.x + r * q.K;
    uint8_t* dst = q.q + r * q.ldq;
    int32_t sum = 0;
    for (int64_t k = 0; k < q.K; ++k) {
      float v = std::nearbyint(std::fma(x[k], q.inv_scale, q.zp));
      int32_t i = std::isnan(v) ? 0 : static_cast<int32_t>(std::min(std::max(v, float(q.qlo)),
                                                                    float(q.qhi)));
      const uint8_t byte = static_cast<uint8_t>(i + q.offset);
      dst[k] = byte;
      sum += byte;
    }
    for (int64_t k = q.K; k < q.ldq; ++k) dst[k] = 0;
    if (q.row_sums) q.row_sums[r] = sum;
  }
}

inline void min_max_generic(const float* x, int64_t n, float* mn, float* mx) {
  float lo = x[0], hi = x[0];
  for (int64_t i = 1; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  *mn = lo;
  *mx = hi;
}

}  // namespace
}  // namespace jaxq

#endif  // JAXQ_GENERIC_H_

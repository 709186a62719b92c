// jaxq native CPU kernels: shared declarations.
//
// Packed int8 weight layout ("cpu_vnni"), for W (N, K) int8:
//   Kp = round_up(K, 4), Nq = round_up(N, 16), panels of 64 output columns;
//   panel p starts at byte 64 * p * Kp and holds width wp = min(64, Nq - 64 p) columns as
//   [Kp / 4][wp][4]: the 4 consecutive k values of one column are adjacent, so one 512-bit
//   load feeds VPDPBUSD for 16 columns. Padding (k >= K, n >= N) is zero.
//
// Packed 4-bit weight layout ("cpu_wo4"), for nibbles U (N, K) in [0, 15], K even:
//   Nq = round_up(N, 16), Kq = round_up(K, 8); column block c (16 columns) holds
//   [Kq / 8][16] little-endian 32-bit words, word (j, i) = sum over t < 8 of
//   U[16c + i, 8j + t] << 4t (zero for k >= K and n >= N): one 512-bit load is 8 k of
//   16 columns. Kq / 2 * Nq bytes.
#ifndef JAXQ_CPU_H_
#define JAXQ_CPU_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace jaxq {

constexpr int64_t kPanel = 64;

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Rows of A a GEMM works through at a time: ~192 KB of them (they stay in L2 while the
// panels stream past), a multiple of the 6-row tile, at most 384.
inline int64_t gemm_row_block(int64_t kp) {
  return std::max<int64_t>(6, std::min<int64_t>(384, 196608 / kp / 6 * 6));
}

enum OutKind : int { kOutInt32 = 0, kOutF32 = 1, kOutU8 = 2, kOutS8 = 3 };

// One u8 x s8 -> s32 GEMM with its epilogue. A is uint8 (M, lda) with lda >= Kp and the
// bytes [K, Kp) of every row zero.
struct GemmArgs {
  int64_t M, N, K, Kp;
  const uint8_t* A;
  int64_t lda;
  const int8_t* B;
  int out_kind;
  void* out;  // (M, N) row-major
  // acc_c = acc - zx * col_sums[n] - zw[n] * row_sums[m] + K * zx * zw[n]  (mod 2^32)
  const int32_t* col_sums;  // (N)
  const int32_t* zw;        // nullptr when every weight zero point is 0
  int64_t zw_stride;        // 1 per channel, 0 per tensor
  const int32_t* zx_row;    // per-row activation zero point (u8 domain) or nullptr
  int32_t zx;               // uniform activation zero point (u8 domain)
  const int32_t* row_sums;  // (M) sum_k A[m, k], needed when zw != nullptr
  const int32_t* col_offset;  // (N) -zx * col_sums[n] precomputed (uniform zx), or nullptr
  // float output: y = fma(float(acc_c), sx * sw[n], bias[n]), relu
  const float* sx_row;
  float sx;
  const float* sw;
  int64_t sw_stride;
  const float* bias;  // nullptr when absent
  // requantized output: q = clamp(rint((float(acc_c) + rq_bias[n]) * rq_mult[n]) + zp)
  const float* rq_mult;
  const float* rq_bias;  // nullptr when there is no bias
  int relu;
  int32_t out_zp, qlo, qhi;
};

// Weight-only matmul: y = x (M, K) f32 @ dequant(W).T + bias.
struct WeightOnlyArgs {
  int64_t M, N, K;
  const float* x;      // (M, ldx)
  int64_t ldx;         // bits 8: a multiple of 4 with zeros in [K, ldx); bits 4: K
  const int8_t* B;     // cpu_vnni (bits 8) or cpu_wo4 (bits 4)
  int bits;
  int64_t Kp;          // bits 8: round_up(K, 4); bits 4: K
  int64_t group_size;  // K unless per group (bits 4)
  int64_t num_groups;
  const float* scale;  // (1), (N) or (N, num_groups)
  const int32_t* zp;   // same shape, or nullptr when all zero
  int64_t param_stride_n;  // 0 per tensor, num_groups otherwise (1 per channel)
  const float* xsum;   // (M, num_groups) group sums of x (only when zp)
  const float* bias;
  int relu;
  float* out;          // (M, N)
};

// Float -> u8 quantization of rows: q = clamp(rint(fma(x, inv_scale, zp)), qlo, qhi) + offset,
// stored with row stride ldq (bytes [K, ldq) zeroed); row sums of the stored bytes if asked.
struct QuantizeArgs {
  const float* x;
  int64_t rows, K, ldq;
  float inv_scale, zp;
  int32_t qlo, qhi, offset;
  uint8_t* q;
  int32_t* row_sums;  // nullptr to skip
};

// Geometry of a static conv (NHWC) whose output pixels are the rows of a GemmArgs.
struct ConvGeometry {
  const uint8_t* x;  // (N, H, W, C) in the uint8 domain (int8 input already xor 0x80)
  int64_t h, w, c, kh, kw, sh, sw, pt, pl, dh, dw, out_h, out_w;
  uint8_t pad;      // the activation zero point byte (the real 0)
  size_t out_elem;  // bytes per output element
};

#define JAXQ_DECLARE_ISA(ns)                                                      \
  namespace ns {                                                                  \
  void gemm(const GemmArgs& g, int64_t m0, int64_t m1, int64_t p0, int64_t p1);  \
  void conv_rows(const GemmArgs& g, const ConvGeometry& cg, int64_t m0, int64_t m1, \
                 uint8_t* scratch, int32_t* sums);                                \
  void weight_only(const WeightOnlyArgs& w, int64_t c0, int64_t c1);             \
  void quantize_rows(const QuantizeArgs& q);                                     \
  void min_max(const float* x, int64_t n, float* mn, float* mx);                 \
  }

JAXQ_DECLARE_ISA(avx512)
JAXQ_DECLARE_ISA(avx2)

}  // namespace jaxq

#endif  // JAXQ_CPU_H_

// AVX2 + FMA kernels: the portable loops of generic.h compiled with -mavx2 -mfma and
// auto-vectorized (exact int32 arithmetic: no VPMADDUBSW saturation). Slower than the
// AVX512-VNNI path; this is the fallback for CPUs without VNNI.
#include "generic.h"
#include "jaxq_cpu.h"

namespace jaxq {
namespace avx2 {

void gemm(const GemmArgs& g, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  gemm_generic(g, m0, m1, p0, p1);
}

void conv_rows(const GemmArgs& g, const ConvGeometry& cg, int64_t m0, int64_t m1,
               uint8_t* scratch, int32_t* sums) {
  conv_rows_generic(g, cg, m0, m1, scratch, sums);
}

void weight_only(const WeightOnlyArgs& w, int64_t c0, int64_t c1) {
  weight_only_generic(w, c0, c1);
}

void quantize_rows(const QuantizeArgs& q) { quantize_rows_generic(q); }

void min_max(const float* x, int64_t n, float* mn, float* mx) { min_max_generic(x, n, mn, mx); }

}  // namespace avx2
}  // namespace jaxq

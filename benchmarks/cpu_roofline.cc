// Ceilings of this CPU for the int8 benchmarks (built and run by cpu_roofline.py).
//
//   vnni T:   VPDPBUSD zmm throughput with T threads, each running 12 independent
//             accumulator chains in registers: the most int8 ops/s any kernel can reach.
//   read T B: bytes/s of T threads summing disjoint slices of a B-byte buffer that every
//             thread has read once before (so it sits in the caches it fits in): the most
//             bytes/s a matrix-vector product streaming a B-byte weight can reach.
//   mix NAME: 1 thread, int8-equivalent ops/s of VPDPBUSD chains interleaved with chains of
//             another multiply instruction (VPMADDUBSW + VPADDW, VDPBF16PS, VFMADD):
//             if any of them issued on a pipe that VPDPBUSD leaves idle, the mix would
//             beat `vnni 1` and the VNNI peak would not be the int8 ceiling.
// Each figure is the best of 5 runs. Prints one line per measurement.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Runs fn(thread index) on `threads` threads started together; returns the wall seconds.
template <typename Fn>
double run_together(int threads, Fn fn) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  double start = 0;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load()) {
      }
      fn(t);
    });
  }
  while (ready.load() < threads) {
  }
  start = now();
  go.store(true);
  for (auto& th : pool) th.join();
  return now() - start;
}

__attribute__((target("avx512f,avx512vnni"))) void vnni_loop(int64_t iterations) {
  asm volatile(
      "vpxord %%zmm0, %%zmm0, %%zmm0\n"
      "vpxord %%zmm1, %%zmm1, %%zmm1\n"
      "mov %0, %%rcx\n"
      "1:\n"
      "vpdpbusd %%zmm14, %%zmm15, %%zmm0\n vpdpbusd %%zmm14, %%zmm15, %%zmm1\n"
      "vpdpbusd %%zmm14, %%zmm15, %%zmm2\n vpdpbusd %%zmm14, %%zmm15, %%zmm3\n"
      "vpdpbusd %%zmm14, %%zmm15, %%zmm4\n vpdpbusd %%zmm14, %%zmm15, %%zmm5\n"
      "vpdpbusd %%zmm14, %%zmm15, %%zmm6\n vpdpbusd %%zmm14, %%zmm15, %%zmm7\n"
      "vpdpbusd %%zmm14, %%zmm15, %%zmm8\n vpdpbusd %%zmm14, %%zmm15, %%zmm9\n"
      "vpdpbusd %%zmm14, %%zmm15, %%zmm10\n vpdpbusd %%zmm14, %%zmm15, %%zmm11\n"
      "dec %%rcx\n"
      "jnz 1b\n"
      :
      : "r"(iterations)
      : "rcx", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
        "xmm9", "xmm10", "xmm11");
}

// 8 VPDPBUSD chains plus 4 chains of another instruction per iteration (asm, so the
// compiler neither hoists nor merges them). Returns the other instruction's name.
#define JAXQ_VNNI8                                                                  \
  "vpdpbusd %%zmm14, %%zmm15, %%zmm0\n vpdpbusd %%zmm14, %%zmm15, %%zmm1\n"        \
  "vpdpbusd %%zmm14, %%zmm15, %%zmm2\n vpdpbusd %%zmm14, %%zmm15, %%zmm3\n"        \
  "vpdpbusd %%zmm14, %%zmm15, %%zmm4\n vpdpbusd %%zmm14, %%zmm15, %%zmm5\n"        \
  "vpdpbusd %%zmm14, %%zmm15, %%zmm6\n vpdpbusd %%zmm14, %%zmm15, %%zmm7\n"
#define JAXQ_MIX_LOOP(other)                                                        \
  asm volatile("mov %0, %%rcx\n"                                                  \
               "1:\n" JAXQ_VNNI8 other "dec %%rcx\n jnz 1b\n"                     \
               :                                                                    \
               : "r"(iterations)                                                    \
               : "rcx", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", \
                 "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13")

__attribute__((target("avx512f,avx512bw,avx512vnni"))) void mix_maddubs(int64_t iterations) {
  // u8 x s8 pairs -> s16 (64 multiply-adds), then a 16-bit add: the pre-VNNI sequence.
  JAXQ_MIX_LOOP(
      "vpmaddubsw %%zmm14, %%zmm15, %%zmm12\n vpaddw %%zmm12, %%zmm8, %%zmm8\n"
      "vpmaddubsw %%zmm14, %%zmm15, %%zmm13\n vpaddw %%zmm13, %%zmm9, %%zmm9\n"
      "vpmaddubsw %%zmm14, %%zmm15, %%zmm12\n vpaddw %%zmm12, %%zmm10, %%zmm10\n"
      "vpmaddubsw %%zmm14, %%zmm15, %%zmm13\n vpaddw %%zmm13, %%zmm11, %%zmm11\n");
}

__attribute__((target("avx512f,avx512bf16,avx512vnni"))) void mix_bf16(int64_t iterations) {
  JAXQ_MIX_LOOP(
      "vdpbf16ps %%zmm14, %%zmm15, %%zmm8\n vdpbf16ps %%zmm14, %%zmm15, %%zmm9\n"
      "vdpbf16ps %%zmm14, %%zmm15, %%zmm10\n vdpbf16ps %%zmm14, %%zmm15, %%zmm11\n");
}

__attribute__((target("avx512f,fma,avx512vnni"))) void mix_fma(int64_t iterations) {
  JAXQ_MIX_LOOP(
      "vfmadd231ps %%zmm14, %%zmm15, %%zmm8\n vfmadd231ps %%zmm14, %%zmm15, %%zmm9\n"
      "vfmadd231ps %%zmm14, %%zmm15, %%zmm10\n vfmadd231ps %%zmm14, %%zmm15, %%zmm11\n");
}

__attribute__((target("avx512f,avx512bw"))) uint64_t sum_bytes(const uint8_t* p, int64_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  const __m512i zero = _mm512_setzero_si512();
  for (int64_t i = 0; i + 256 <= n; i += 256) {
    a0 = _mm512_add_epi64(a0, _mm512_sad_epu8(_mm512_loadu_si512(p + i), zero));
    a1 = _mm512_add_epi64(a1, _mm512_sad_epu8(_mm512_loadu_si512(p + i + 64), zero));
    a2 = _mm512_add_epi64(a2, _mm512_sad_epu8(_mm512_loadu_si512(p + i + 128), zero));
    a3 = _mm512_add_epi64(a3, _mm512_sad_epu8(_mm512_loadu_si512(p + i + 192), zero));
  }
  return _mm512_reduce_add_epi64(
      _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
}

}  // namespace

int main(int argc, char** argv) {
  const int max_threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const int64_t bytes = argc > 2 ? std::atoll(argv[2]) : (16 << 20);
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512vnni") || !__builtin_cpu_supports("avx512bw")) {
    std::printf("error no AVX512-VNNI on this CPU\n");
    return 1;
  }
  const int64_t iterations = 20'000'000;  // x 12 instructions: ~0.1-0.3 s per run
  for (int threads = 1; threads <= max_threads; ++threads) {
    double best = 1e30;
    for (int rep = 0; rep < 5; ++rep) {
      best = std::min(best, run_together(threads, [&](int) { vnni_loop(iterations); }));
    }
    const double ops = 2.0 * 64 * 12 * static_cast<double>(iterations) * threads;
    std::printf("vnni %d %.1f\n", threads, ops / best / 1e9);
  }
  // Multiply-adds per iteration: 8 x 64 from VPDPBUSD plus the other chains' (VPMADDUBSW:
  // 64 each, VDPBF16PS: 32 each, VFMADD: 16 each), as int8-equivalent ops (2 per MAC).
  struct Mix {
    const char* name;
    void (*loop)(int64_t);
    double macs;
    bool supported;
  };
  const Mix mixes[] = {{"vpmaddubsw", mix_maddubs, 8 * 64 + 4 * 64, true},
                       {"vdpbf16ps", mix_bf16, 8 * 64 + 4 * 32,
                        static_cast<bool>(__builtin_cpu_supports("avx512bf16"))},
                       {"vfmadd", mix_fma, 8 * 64 + 4 * 16, true}};
  for (const Mix& mix : mixes) {
    if (!mix.supported) continue;
    double best = 1e30;
    for (int rep = 0; rep < 5; ++rep) {
      best = std::min(best, run_together(1, [&](int) { mix.loop(iterations / 2); }));
    }
    std::printf("mix %s %.1f\n", mix.name, 2.0 * mix.macs * (iterations / 2) / best / 1e9);
  }
  std::vector<uint8_t> buffer(bytes);
  for (int64_t i = 0; i < bytes; ++i) buffer[i] = static_cast<uint8_t>(i * 7);
  std::atomic<uint64_t> sink{0};
  for (int threads = 1; threads <= max_threads; ++threads) {
    const int64_t slice = bytes / threads / 256 * 256;
    auto pass = [&](int t) { sink += sum_bytes(buffer.data() + t * slice, slice); };
    run_together(threads, [&](int t) {
      for (int u = 0; u < threads; ++u) sum_bytes(buffer.data() + u * slice, slice);
    });
    // Enough passes that starting the threads is a small part of a run.
    const int passes = static_cast<int>(std::max<int64_t>(10, (int64_t{1} << 29) / bytes));
    double best = 1e30;
    for (int rep = 0; rep < 5; ++rep) {
      best = std::min(best, run_together(threads, [&](int t) {
        for (int r = 0; r < passes; ++r) pass(t);
      }) / passes);
    }
    std::printf("read %d %lld %.1f\n", threads, static_cast<long long>(bytes),
                static_cast<double>(slice) * threads / best / 1e9);
  }
  return sink.load() == 42 ? 2 : 0;
}

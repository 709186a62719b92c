// The native CPU kernel's parts, timed alone (no XLA, no Python): the int8 GEMM with its
// float epilogue on a uint8 activation already quantized, and the two passes of the
// activation's dynamic quantization (min/max, quantize). cpu_kernel_parts.py builds this
// file against kernels/cpu/ and compares the figures with the VPDPBUSD ceiling and with
// jaxq's end-to-end time (cpu_linear.py).
//
// usage: cpu_kernel_parts gemm M K N THREADS REPS   -> "gemm <median s> <best s>"
//        cpu_kernel_parts quantize M K REPS         -> "quantize <best s> minmax <best s>"
// The GEMM's tasks are split as the FFI handler splits them (row blocks x panel ranges,
// claimed from a counter); the second thread is a helper that spins between repetitions.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "jaxq_cpu.h"

using namespace jaxq;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

int time_gemm(int64_t m, int64_t k, int64_t n, int threads, int reps) {
  const int64_t kp = round_up(k, 4), nq = round_up(n, 16);
  std::vector<uint8_t> a(m * kp);
  std::vector<int8_t> b(kp * nq);
  std::mt19937 rng(0);
  for (auto& v : a) v = static_cast<uint8_t>(rng());
  for (auto& v : b) v = static_cast<int8_t>(rng());
  std::vector<int32_t> col_sums(n, 0), col_offset(n, 0);
  std::vector<float> scale(n, 0.01f), bias(n, 0.5f), out(m * n);
  GemmArgs g{};
  g.M = m;
  g.N = n;
  g.K = k;
  g.Kp = kp;
  g.A = a.data();
  g.lda = kp;
  g.B = b.data();
  g.out_kind = kOutF32;
  g.out = out.data();
  g.col_sums = col_sums.data();
  g.col_offset = col_offset.data();
  g.zx = 3;
  g.sx = 0.02f;
  g.sw = scale.data();
  g.sw_stride = 1;
  g.bias = bias.data();
  const int64_t panels = (n + kPanel - 1) / kPanel;
  const int64_t row_block = gemm_row_block(kp);
  const int64_t row_blocks = (m + row_block - 1) / row_block;
  const int64_t ranges =
      std::min<int64_t>(panels, std::max<int64_t>(1, (threads * 8 + row_blocks - 1) / row_blocks));
  const int tasks = static_cast<int>(row_blocks * ranges);
  std::atomic<int> next{0}, done{0}, epoch{0};
  std::atomic<bool> stop{false};
  auto work = [&] {
    for (int i; (i = next.fetch_add(1)) < tasks; done.fetch_add(1)) {
      const int64_t r0 = i / ranges * row_block, r1 = std::min(m, r0 + row_block);
      const int64_t p0 = panels * (i % ranges) / ranges, p1 = panels * (i % ranges + 1) / ranges;
      if (p0 < p1) avx512::gemm(g, r0, r1, p0, p1);
    }
  };
  std::thread helper([&] {
    for (int seen = 0; !stop.load();) {
      const int now = epoch.load();
      if (now != seen) {
        seen = now;
        work();
      }
    }
  });
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    next = 0;
    done = 0;
    const auto start = Clock::now();
    if (threads > 1) epoch.fetch_add(1);
    work();
    while (done.load() < tasks) {
    }
    times.push_back(seconds_since(start));
  }
  stop = true;
  helper.join();
  std::sort(times.begin(), times.end());
  std::printf("gemm %.9f %.9f\n", times[times.size() / 2], times[0]);
  return 0;
}

int time_quantize(int64_t m, int64_t k, int reps) {
  const int64_t kp = round_up(k, 4);
  std::vector<float> x(m * k);
  std::mt19937 rng(0);
  std::normal_distribution<float> normal;
  for (auto& v : x) v = normal(rng);
  std::vector<uint8_t> q(m * kp);
  QuantizeArgs args{x.data(), m, k, kp, 1.0f / 0.03f, 120.0f, 0, 255, 0, q.data(), nullptr};
  double quantize = 1e9, range = 1e9;
  for (int r = 0; r < reps; ++r) {
    auto start = Clock::now();
    avx512::quantize_rows(args);
    quantize = std::min(quantize, seconds_since(start));
    float lo, hi;
    start = Clock::now();
    avx512::min_max(x.data(), m * k, &lo, &hi);
    range = std::min(range, seconds_since(start));
  }
  std::printf("quantize %.9f minmax %.9f\n", quantize, range);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 7 && std::strcmp(argv[1], "gemm") == 0) {
    return time_gemm(std::atol(argv[2]), std::atol(argv[3]), std::atol(argv[4]),
                     std::atoi(argv[5]), std::atoi(argv[6]));
  }
  if (argc == 5 && std::strcmp(argv[1], "quantize") == 0) {
    return time_quantize(std::atol(argv[2]), std::atol(argv[3]), std::atoi(argv[4]));
  }
  std::fprintf(stderr, "usage: %s gemm M K N THREADS REPS | quantize M K REPS\n", argv[0]);
  return 2;
}

// jaxq native CPU backend: XLA FFI handlers, CPU feature dispatch and a persistent pool.
//
// Built by jaxq/kernels/cpu/build.py into one shared library loaded with ctypes; the
// handlers are registered with jax.ffi.register_ffi_target(..., platform="cpu").
//
// Handlers (every shape is checked against the attributes; a mismatch returns
// InvalidArgument instead of touching memory):
//   jaxq_qgemm        int8 activations (uint8, int8, or float32 quantized in the call with
//                     torch's per-tensor dynamic rule) x packed int8 weight -> int32 / f32 /
//                     requantized uint8 / int8.
//   jaxq_weight_only  float32 activations x packed int8 / int4 weight -> f32.
//   jaxq_qconv2d      NHWC uint8 / int8 activations x packed int8 kernel (im2col blocks).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>

#include "jaxq_cpu.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace jaxq {
namespace {

// ---------------------------------------------------------------------------------------
// CPU features.
// ---------------------------------------------------------------------------------------
enum Isa : int { kIsaNone = 0, kIsaAvx2 = 1, kIsaAvx512Vnni = 2 };

int detect_isa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("fma")) {
    return kIsaAvx512Vnni;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return kIsaAvx2;
  return kIsaNone;
}

const int g_detected_isa = detect_isa();
std::atomic<int> g_isa{g_detected_isa};

struct Kernels {
  void (*gemm)(const GemmArgs&, int64_t, int64_t, int64_t, int64_t);
  void (*conv_rows)(const GemmArgs&, const ConvGeometry&, int64_t, int64_t, uint8_t*,
                    int32_t*);
  void (*weight_only)(const WeightOnlyArgs&, int64_t, int64_t);
  void (*quantize_rows)(const QuantizeArgs&);
  void (*min_max)(const float*, int64_t, float*, float*);
};

Kernels kernels() {
  if (g_isa.load(std::memory_order_relaxed) == kIsaAvx512Vnni) {
    return {avx512::gemm, avx512::conv_rows, avx512::weight_only, avx512::quantize_rows,
            avx512::min_max};
  }
  return {avx2::gemm, avx2::conv_rows, avx2::weight_only, avx2::quantize_rows,
          avx2::min_max};
}

// ---------------------------------------------------------------------------------------
// Parallelism: every thread, the caller included, claims task indices from the job's
// counter, so a task is never run twice; the caller waits only for the tasks to be done,
// never for a helper to start. The helpers are jaxq's spinning pool (SpinPool below), or
// XLA's intra-op pool (the FFI ThreadPool context) while another call holds jaxq's.
// ---------------------------------------------------------------------------------------
inline void cpu_relax() { __builtin_ia32_pause(); }

int default_threads() {
  if (const char* env = std::getenv("JAXQ_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

std::atomic<int> g_threads{default_threads()};

// A job: tasks [0, tasks) claimed from a shared counter by every participating thread.
// A thread that arrives after the last task was claimed returns without touching fn (which
// lives on the caller's stack); the counters outlive the caller through the shared_ptr.
struct Job {
  Job(int t, const std::function<void(int)>* f) : tasks(t), fn(f) {}
  void work() {
    for (;;) {
      const int i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= tasks) return;
      (*fn)(i);
      done.fetch_add(1, std::memory_order_release);
    }
  }
  // Called by the job's owner after its own work(): returns once every task is done.
  void wait() const {
    for (int spins = 0; done.load(std::memory_order_acquire) < tasks; ++spins) {
      if (spins < 4096) {
        cpu_relax();
      } else {
        std::this_thread::yield();
      }
    }
  }
  const int tasks;
  const std::function<void(int)>* const fn;
  std::atomic<int> next{0}, done{0};
};

// How long an idle worker of the spinning pool polls for the next job before it sleeps.
int64_t spin_nanoseconds() {
  if (const char* env = std::getenv("JAXQ_SPIN_US")) return std::max(0L, std::atol(env)) * 1000;
  return 300'000;
}

// jaxq's own workers: after a job each one polls for the next for JAXQ_SPIN_US
// (default 300 us), then sleeps on a condition variable. Back-to-back kernel calls (a
// decode loop, consecutive layers) so find their helpers awake; XLA's intra-op pool puts
// its workers to sleep sooner, and waking one took 30-100 us on the 2-core VM, a third of
// a 0.2 ms matrix-vector product. One caller at a time owns the pool; a concurrent
// caller falls back to XLA's pool. The pool is never destroyed (its threads sleep at exit).
class SpinPool {
 public:
  static SpinPool& get() {
    static const bool registered = [] {
      // A forked child has none of the workers and maybe a mutex held by one: it starts
      // a fresh pool (the old one is leaked, as the pool always is).
      pthread_atfork(nullptr, nullptr, [] { instance().store(new SpinPool()); });
      return true;
    }();
    (void)registered;
    return *instance().load(std::memory_order_acquire);
  }

  bool try_acquire() {
    bool expected = false;
    return busy_.compare_exchange_strong(expected, true, std::memory_order_acquire);
  }
  void release() { busy_.store(false, std::memory_order_release); }

  // Runs the job on the caller and `helpers` workers (started on first need). The caller
  // must hold the pool.
  void run(const std::shared_ptr<Job>& job, int helpers) {
    ensure_workers(helpers);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      current_ = job;
      wanted_ = helpers;
      epoch_.fetch_add(1, std::memory_order_seq_cst);
    }
    if (sleepers_.load(std::memory_order_seq_cst) > 0) wake_.notify_all();
    job->work();
    job->wait();
    std::lock_guard<std::mutex> lock(mutex_);
    current_.reset();
  }

 private:
  SpinPool() : spin_ns_(spin_nanoseconds()) {}

  static std::atomic<SpinPool*>& instance() {
    static std::atomic<SpinPool*> pool{new SpinPool()};
    return pool;
  }

  void ensure_workers(int count) {
    if (started_.load(std::memory_order_acquire) >= count) return;
    std::lock_guard<std::mutex> lock(mutex_);
    while (static_cast<int>(workers_.size()) < count) {
      const int index = static_cast<int>(workers_.size());
      workers_.emplace_back([this, index] { loop(index); });
      workers_.back().detach();
    }
    started_.store(static_cast<int>(workers_.size()), std::memory_order_release);
  }

  void loop(int index) {
    uint64_t seen = epoch_.load(std::memory_order_acquire);
    for (;;) {
      const auto idle_since = std::chrono::steady_clock::now();
      for (int spins = 0; epoch_.load(std::memory_order_acquire) == seen; ++spins) {
        cpu_relax();
        if ((spins & 255) != 255) continue;
        // Let a runnable thread (XLA's, between jaxq's calls) have this core.
        sched_yield();
        if (std::chrono::duration_cast<std::chrono::nanoseconds>(
                std::chrono::steady_clock::now() - idle_since).count() >= spin_ns_) {
          std::unique_lock<std::mutex> lock(mutex_);
          sleepers_.fetch_add(1, std::memory_order_seq_cst);
          wake_.wait(lock, [&] { return epoch_.load(std::memory_order_acquire) != seen; });
          sleepers_.fetch_sub(1, std::memory_order_seq_cst);
          break;
        }
      }
      std::shared_ptr<Job> job;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        seen = epoch_.load(std::memory_order_acquire);
        if (index < wanted_) job = current_;
      }
      if (job) job->work();
    }
  }

  const int64_t spin_ns_;
  std::atomic<bool> busy_{false};
  std::atomic<uint64_t> epoch_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<int> started_{0};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::shared_ptr<Job> current_;
  int wanted_ = 0;
  std::vector<std::thread> workers_;
};

class Parallel {
 public:
  explicit Parallel(ffi::ThreadPool& xla)
      : xla_(xla),
        size_(static_cast<int>(std::max<int64_t>(
            1, std::min<int64_t>(g_threads.load(std::memory_order_relaxed), xla.num_threads())))) {}
  int size() const { return size_; }

  // Runs fn(i) for every i in [0, tasks): on jaxq's spinning pool, or on XLA's intra-op
  // pool while another call holds it.
  void parallel_for(int tasks, const std::function<void(int)>& fn) {
    if (tasks <= 1 || size_ <= 1) {
      for (int i = 0; i < tasks; ++i) fn(i);
      return;
    }
    auto job = std::make_shared<Job>(tasks, &fn);
    const int helpers = std::min(tasks, size_) - 1;
    SpinPool& pool = SpinPool::get();
    if (pool.try_acquire()) {
      pool.run(job, helpers);
      pool.release();
      return;
    }
    for (int h = 0; h < helpers; ++h) xla_.Schedule([job] { job->work(); });
    job->work();
    job->wait();
  }

 private:
  ffi::ThreadPool& xla_;
  const int size_;
};

// ---------------------------------------------------------------------------------------
// Huge pages for large packed int8 weights. A GEMM that streams a weight of several MiB
// from L3 (the matrix-vector product of an M = 1 Linear) crosses a 4 KiB page every
// 4 KiB, and the hardware prefetchers stop at each page boundary; backed by 2 MiB pages
// the same read ran 12-14% faster here (1 x 4096 x 4096, 2 threads; the weight-only
// kernels, bound by their float arithmetic, gained nothing). XLA owns
// the buffer and allocates it with 4 KiB pages, so the first call that sees a weight asks
// the kernel to back its 2 MiB-aligned interior with huge pages (MADV_HUGEPAGE, then the
// synchronous MADV_COLLAPSE of Linux >= 6.1: a one-time cost of a few ms per 16 MiB). The
// contents never change; where the kernel refuses (older kernels, THP disabled) nothing
// happens. JAXQ_HUGE_PAGES=0 turns it off.
// ---------------------------------------------------------------------------------------
constexpr uintptr_t kHugePage = uintptr_t{1} << 21;
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

bool huge_pages_enabled() {
  const char* env = std::getenv("JAXQ_HUGE_PAGES");
  return !(env && std::string(env) == "0");
}

void advise_huge_pages(const void* data, size_t bytes) {
  static const bool enabled = huge_pages_enabled();
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHugePage - 1);
  if (!enabled || end <= begin) return;  // under 2 MiB of aligned interior: nothing to gain
  // Each weight once: the set holds the ranges already advised (a buffer freed and
  // reallocated at the same place is not advised again; it only loses the speed-up).
  static std::mutex mutex;
  static std::unordered_set<uintptr_t> seen;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (!seen.insert(begin ^ (end << 1)).second) return;
    if (seen.size() > 4096) seen.clear();
  }
  void* range = reinterpret_cast<void*>(begin);
  if (madvise(range, end - begin, MADV_HUGEPAGE) == 0) madvise(range, end - begin, MADV_COLLAPSE);
}

// -zx * col_sums[n] (mod 2^32) for a uniform activation zero point.
const int32_t* column_offsets(std::vector<int32_t>& buffer, const int32_t* col_sums, int64_t n,
                              int32_t zx) {
  buffer.resize(n);
  for (int64_t j = 0; j < n; ++j) {
    buffer[j] = static_cast<int32_t>(0u - static_cast<uint32_t>(zx) *
                                              static_cast<uint32_t>(col_sums[j]));
  }
  return buffer.data();
}

// Splits [0, n) into `parts` contiguous ranges aligned to `align`.
inline void split(int64_t n, int parts, int i, int64_t align, int64_t* begin, int64_t* end) {
  const int64_t units = (n + align - 1) / align;
  const int64_t b = units * i / parts, e = units * (i + 1) / parts;
  *begin = std::min(n, b * align);
  *end = std::min(n, e * align);
}

// ---------------------------------------------------------------------------------------
// ATen's ChooseQuantizationParams (aten/src/ATen/native/quantized/cpu/QuantUtils.h), with
// preserve_sparsity = force_scale_power_of_two = false and the range already reduced.
// ---------------------------------------------------------------------------------------
void choose_qparams(float min, float max, int32_t qmin, int32_t qmax, float* scale_out,
                    int32_t* zp_out) {
  constexpr float kSmallScaleThreshold = 6.1e-5f;
  min = std::min(min, 0.f);
  max = std::max(max, 0.f);
  double scale = (static_cast<double>(max) - min) / (qmax - qmin);
  if (float(scale) == 0.0f || std::isinf(1.0f / float(scale))) scale = 0.1;
  if (scale < kSmallScaleThreshold) {
    const float org_scale = static_cast<float>(scale);
    scale = kSmallScaleThreshold;
    if (min == 0.0f) {
      max = kSmallScaleThreshold * (qmax - qmin);
    } else if (max == 0.0f) {
      min = -kSmallScaleThreshold * (qmax - qmin);
    } else {
      const float amplifier = kSmallScaleThreshold / org_scale;
      min *= amplifier;
      max *= amplifier;
    }
  }
  const double zero_point_from_min = qmin - min / scale;
  const double zero_point_from_max = qmax - max / scale;
  const double zero_point_from_min_error = std::abs(qmin) - std::abs(min / scale);
  const double zero_point_from_max_error = std::abs(qmax) - std::abs(max / scale);
  const double initial = zero_point_from_min_error < zero_point_from_max_error
                             ? zero_point_from_min
                             : zero_point_from_max;
  int32_t nudged;
  if (initial < qmin) {
    nudged = qmin;
  } else if (initial > qmax) {
    nudged = qmax;
  } else {
    nudged = static_cast<int32_t>(std::nearbyint(initial));
  }
  *scale_out = static_cast<float>(scale);
  *zp_out = nudged;
}

// Per-calling-thread scratch (the pool's workers only write through these pointers).
struct Scratch {
  std::vector<uint8_t> a;
  std::vector<int32_t> row_sums, zx_row, col_offset;
  std::vector<float> sx_row, rq_mult, rq_bias, xpad, xsum, slice_min, slice_max;
};
thread_local Scratch t_scratch;

ffi::Error invalid(const std::string& what) {
  return ffi::Error(ffi::ErrorCode::kInvalidArgument, "jaxq native CPU kernel: " + what);
}

bool is_2d(const ffi::AnyBuffer& b, int64_t rows, int64_t cols) {
  auto d = b.dimensions();
  return d.size() == 2 && d[0] == rows && d[1] == cols;
}

enum XKind : int64_t { kXU8 = 0, kXS8 = 1, kXF32Dynamic = 2 };

ffi::Error QGemmImpl(ffi::ThreadPool xla_pool, ffi::AnyBuffer x, ffi::AnyBuffer w, ffi::Buffer<ffi::F32> w_scale,
                     ffi::Buffer<ffi::S32> w_zp, ffi::Buffer<ffi::S32> col_sums,
                     ffi::Buffer<ffi::F32> x_scale, ffi::Buffer<ffi::S32> x_zp,
                     ffi::Buffer<ffi::F32> bias, ffi::Buffer<ffi::F32> out_scale,
                     ffi::Buffer<ffi::S32> out_zp, ffi::Result<ffi::AnyBuffer> out, int64_t n,
                     int64_t k, int64_t x_kind, int64_t out_kind, int64_t relu, int64_t qlo,
                     int64_t qhi, int64_t dyn_qmin, int64_t dyn_qmax, int64_t dyn_signed,
                     int64_t row_groups) {
  if (g_isa.load() == kIsaNone) return invalid("this CPU has neither AVX512-VNNI nor AVX2");
  if (n <= 0 || k <= 0) return invalid("n and k must be positive");
  auto xd = x.dimensions();
  if (xd.size() != 2 || xd[1] != k) return invalid("x must have shape (M, k)");
  const int64_t m = xd[0];
  const int64_t kp = round_up(k, 4), nq = round_up(n, 16);
  const auto xt = x.element_type();
  if ((x_kind == kXU8 && xt != ffi::DataType::U8) || (x_kind == kXS8 && xt != ffi::DataType::S8) ||
      (x_kind == kXF32Dynamic && xt != ffi::DataType::F32) || x_kind < 0 || x_kind > 2) {
    return invalid("x dtype does not match x_kind");
  }
  if (w.element_type() != ffi::DataType::S8 || w.element_count() != static_cast<size_t>(kp * nq)) {
    return invalid("packed weight must be int8 with round_up(k, 4) * round_up(n, 16) bytes");
  }
  const int64_t ws = w_scale.element_count(), wz = w_zp.element_count();
  if (!(ws == 1 || ws == n) || !(wz == 0 || wz == 1 || wz == n)) {
    return invalid("weight scale / zero point must have 1 or n entries");
  }
  if (col_sums.element_count() != static_cast<size_t>(n)) return invalid("col_sums must have n entries");
  const int64_t xs = x_scale.element_count(), xz = x_zp.element_count();
  if (x_kind != kXF32Dynamic) {
    if (!(xs == 1 || xs == m) || !(xz == 0 || xz == xs)) {
      return invalid("x_scale must have 1 or M entries and x_zero_point 0 or as many");
    }
  }
  const int64_t nb = bias.element_count();
  if (!(nb == 0 || nb == n)) return invalid("bias must have 0 or n entries");
  if (out_kind < kOutInt32 || out_kind > kOutS8) return invalid("bad out_kind");
  const bool requant = out_kind == kOutU8 || out_kind == kOutS8;
  if (requant && (out_scale.element_count() != 1 || out_zp.element_count() != 1)) {
    return invalid("requantized output needs one out_scale and one out_zero_point");
  }
  static const ffi::DataType kOutTypes[] = {ffi::DataType::S32, ffi::DataType::F32,
                                            ffi::DataType::U8, ffi::DataType::S8};
  if (out->element_type() != kOutTypes[out_kind] || !is_2d(*out, m, n)) {
    return invalid("output must have shape (M, n) and the dtype of out_kind");
  }
  if (row_groups <= 0 || m % row_groups) return invalid("row_groups must divide M");
  if (m == 0) return ffi::Error::Success();
  advise_huge_pages(w.untyped_data(), w.size_bytes());

  const Kernels kern = kernels();
  Parallel tp(xla_pool);
  Scratch& s = t_scratch;
  const bool w_symmetric = wz == 0;

  GemmArgs g{};
  g.M = m;
  g.N = n;
  g.K = k;
  g.Kp = kp;
  g.B = w.typed_data<int8_t>();
  g.col_sums = col_sums.typed_data();
  g.zw = w_symmetric ? nullptr : w_zp.typed_data();
  g.zw_stride = wz == n ? 1 : 0;
  g.out_kind = static_cast<int>(out_kind);
  g.out = out->untyped_data();
  g.relu = relu ? 1 : 0;

  // --- Activations into uint8 rows of stride Kp (zero padded), with their zero points.
  const bool need_row_sums = !w_symmetric;
  if (x_kind == kXF32Dynamic) {
    const float* xf = x.typed_data<float>();
    const int64_t rows_per_group = m / row_groups;
    const int32_t offset = dyn_signed ? 128 : 0;
    const int32_t store_lo = dyn_signed ? -128 : 0, store_hi = dyn_signed ? 127 : 255;
    s.a.resize(m * kp);
    s.row_sums.resize(m);
    s.zx_row.resize(m);
    s.sx_row.resize(m);
    // Rows [b, e) quantized with the range [mn, mx] of their group.
    auto quantize_rows_of = [&](int64_t b, int64_t e, float mn, float mx) {
      float scale;
      int32_t zp;
      choose_qparams(mn, mx, static_cast<int32_t>(dyn_qmin), static_cast<int32_t>(dyn_qmax),
                     &scale, &zp);
      QuantizeArgs q{xf + b * k, e - b, k, kp, 1.0f / scale, static_cast<float>(zp),
                     store_lo, store_hi, offset, s.a.data() + b * kp,
                     need_row_sums ? s.row_sums.data() + b : nullptr};
      kern.quantize_rows(q);
      for (int64_t r = b; r < e; ++r) {
        s.zx_row[r] = zp + offset;
        s.sx_row[r] = scale;
      }
    };
    const bool parallel = m * k >= (1 << 15);
    if (row_groups == 1) {
      // One range for the batch: the min / max of slices of rows in parallel (min and max
      // are exact, so the slicing does not change them), then the rows in parallel.
      const int tasks = parallel ? tp.size() : 1;
      std::vector<float>& mins = s.slice_min;
      std::vector<float>& maxs = s.slice_max;
      mins.assign(tasks, INFINITY);
      maxs.assign(tasks, -INFINITY);
      tp.parallel_for(tasks, [&](int i) {
        int64_t b, e;
        split(m, tasks, i, 1, &b, &e);
        if (b < e) kern.min_max(xf + b * k, (e - b) * k, &mins[i], &maxs[i]);
      });
      float mn = mins[0], mx = maxs[0];
      for (int i = 1; i < tasks; ++i) {
        mn = std::min(mn, mins[i]);
        mx = std::max(mx, maxs[i]);
      }
      tp.parallel_for(tasks, [&](int i) {
        int64_t b, e;
        split(m, tasks, i, 1, &b, &e);
        if (b < e) quantize_rows_of(b, e, mn, mx);
      });
    } else {
      // A range per group of rows (per token: per row): whole groups per task.
      const int tasks = parallel ? static_cast<int>(std::min<int64_t>(row_groups,
                                                                      tp.size() * 4)) : 1;
      tp.parallel_for(tasks, [&](int i) {
        int64_t gb, ge;
        split(row_groups, tasks, i, 1, &gb, &ge);
        for (int64_t grp = gb; grp < ge; ++grp) {
          const int64_t r0 = grp * rows_per_group;
          float mn, mx;
          kern.min_max(xf + r0 * k, rows_per_group * k, &mn, &mx);
          quantize_rows_of(r0, r0 + rows_per_group, mn, mx);
        }
      });
    }
    g.A = s.a.data();
    g.lda = kp;
    g.row_sums = s.row_sums.data();
    if (row_groups == 1) {
      g.zx = s.zx_row[0];
      g.sx = s.sx_row[0];
    } else {
      g.zx_row = s.zx_row.data();
      g.sx_row = s.sx_row.data();
    }
  } else {
    const uint8_t* xb = static_cast<const uint8_t*>(x.untyped_data());
    const bool is_signed = x_kind == kXS8;
    const int32_t shift = is_signed ? 128 : 0;
    if (!is_signed && k == kp && !need_row_sums) {
      g.A = xb;
      g.lda = k;
    } else {
      s.a.resize(m * kp);
      s.row_sums.resize(m);
      const uint8_t flip = is_signed ? 0x80 : 0x00;
      for (int64_t r = 0; r < m; ++r) {
        uint8_t* dst = s.a.data() + r * kp;
        const uint8_t* src = xb + r * k;
        int32_t sum = 0;
        for (int64_t j = 0; j < k; ++j) {
          dst[j] = src[j] ^ flip;
          sum += dst[j];
        }
        for (int64_t j = k; j < kp; ++j) dst[j] = 0;
        s.row_sums[r] = sum;
      }
      g.A = s.a.data();
      g.lda = kp;
      g.row_sums = s.row_sums.data();
    }
    if (xs == 1) {
      g.sx = x_scale.typed_data()[0];
      g.zx = (xz ? x_zp.typed_data()[0] : 0) + shift;
    } else {
      g.sx_row = x_scale.typed_data();
      if (xz || shift) {
        s.zx_row.resize(m);
        for (int64_t r = 0; r < m; ++r) s.zx_row[r] = (xz ? x_zp.typed_data()[r] : 0) + shift;
        g.zx_row = s.zx_row.data();
      }
    }
  }

  // --- Epilogue parameters.
  g.sw = w_scale.typed_data();
  g.sw_stride = ws == n ? 1 : 0;
  g.bias = nb ? bias.typed_data() : nullptr;
  if (requant) {
    if (g.sx_row) return invalid("requantized output needs a per-tensor activation scale");
    const float so = out_scale.typed_data()[0];
    s.rq_mult.resize(n);
    s.rq_bias.resize(n);
    for (int64_t j = 0; j < n; ++j) {
      const float ats = g.sx * g.sw[j * g.sw_stride];
      s.rq_mult[j] = ats / so;
      if (nb) s.rq_bias[j] = g.bias[j] / ats;
    }
    g.rq_mult = s.rq_mult.data();
    g.rq_bias = nb ? s.rq_bias.data() : nullptr;
    g.out_zp = out_zp.typed_data()[0];
    g.qlo = static_cast<int32_t>(qlo);
    g.qhi = static_cast<int32_t>(qhi);
  }

  if (!g.zx_row) g.col_offset = column_offsets(s.col_offset, g.col_sums, n, g.zx);

  // --- The GEMM's tasks: a grid of row blocks (the kernel's, kept in L2) x ranges of
  // panels, ~8 tasks per thread, claimed in row-block order. Tasks that small keep the
  // threads' finishing times within one task of each other when the host slows one core
  // down; whole row blocks keep A's reuse.
  const int64_t panels = (n + kPanel - 1) / kPanel;
  const int threads = tp.size();
  const bool tiny = static_cast<double>(m) * n * k < 65536.0;
  const int64_t row_block = tiny ? m : gemm_row_block(kp);
  const int64_t row_blocks = (m + row_block - 1) / row_block;
  const int64_t panel_ranges = tiny ? 1 : std::min<int64_t>(
      panels, std::max<int64_t>(1, (threads * 8 + row_blocks - 1) / row_blocks));
  const int tasks = static_cast<int>(row_blocks * panel_ranges);
  tp.parallel_for(tasks, [&](int i) {
    const int64_t r0 = i / panel_ranges * row_block, r1 = std::min(m, r0 + row_block);
    int64_t b, e;
    split(panels, static_cast<int>(panel_ranges), static_cast<int>(i % panel_ranges), 1, &b, &e);
    if (b < e) kern.gemm(g, r0, r1, b, e);
  });
  return ffi::Error::Success();
}

ffi::Error WeightOnlyImpl(ffi::ThreadPool xla_pool, ffi::Buffer<ffi::F32> x, ffi::AnyBuffer w, ffi::Buffer<ffi::F32> scale,
                          ffi::Buffer<ffi::S32> zp, ffi::Buffer<ffi::F32> bias,
                          ffi::Result<ffi::Buffer<ffi::F32>> out, int64_t n, int64_t k,
                          int64_t bits, int64_t group_size, int64_t relu) {
  if (g_isa.load() == kIsaNone) return invalid("this CPU has neither AVX512-VNNI nor AVX2");
  if (n <= 0 || k <= 0) return invalid("n and k must be positive");
  auto xd = x.dimensions();
  if (xd.size() != 2 || xd[1] != k) return invalid("x must have shape (M, k)");
  const int64_t m = xd[0];
  if (bits != 8 && bits != 4) return invalid("bits must be 8 or 4");
  if (group_size <= 0 || k % group_size) return invalid("group_size must divide k");
  const int64_t groups = k / group_size;
  const int64_t nq = round_up(n, 16);
  int64_t expected_bytes;
  if (bits == 8) {
    if (groups != 1) return invalid("8-bit weight-only takes per-tensor / per-channel scales");
    expected_bytes = round_up(k, 4) * nq;
  } else {
    if (k % 2 || group_size % 2) return invalid("4-bit weights need an even k and group_size");
    expected_bytes = round_up(k, 8) / 2 * nq;
  }
  if (w.element_type() != ffi::DataType::S8 ||
      w.element_count() != static_cast<size_t>(expected_bytes)) {
    return invalid("packed weight has the wrong dtype or size");
  }
  const int64_t sc = scale.element_count(), zc = zp.element_count();
  int64_t stride;
  if (sc == 1) {
    stride = 0;
  } else if (sc == n && groups == 1) {
    stride = 1;
  } else if (sc == n * groups) {
    stride = groups;
  } else {
    return invalid("scale must have 1, n or n * k / group_size entries");
  }
  if (!(zc == 0 || zc == sc)) return invalid("zero_point must be empty or match scale");
  const int64_t nb = bias.element_count();
  if (!(nb == 0 || nb == n)) return invalid("bias must have 0 or n entries");
  auto od = out->dimensions();
  if (od.size() != 2 || od[0] != m || od[1] != n) return invalid("output must be (M, n)");
  if (m == 0) return ffi::Error::Success();

  const Kernels kern = kernels();
  Parallel tp(xla_pool);
  Scratch& s = t_scratch;
  WeightOnlyArgs a{};
  a.M = m;
  a.N = n;
  a.K = k;
  a.B = w.typed_data<int8_t>();
  a.bits = static_cast<int>(bits);
  a.Kp = bits == 8 ? round_up(k, 4) : k;
  a.group_size = group_size;
  a.num_groups = groups;
  a.scale = scale.typed_data();
  a.zp = zc ? zp.typed_data() : nullptr;
  a.param_stride_n = stride;
  a.bias = nb ? bias.typed_data() : nullptr;
  a.relu = relu ? 1 : 0;
  a.out = out->typed_data();
  const float* xf = x.typed_data();
  if (bits == 8 && k % 4) {
    s.xpad.assign(m * a.Kp, 0.0f);
    for (int64_t r = 0; r < m; ++r) std::memcpy(&s.xpad[r * a.Kp], xf + r * k, k * sizeof(float));
    a.x = s.xpad.data();
    a.ldx = a.Kp;
  } else {
    a.x = xf;
    a.ldx = k;
  }
  if (a.zp) {
    s.xsum.resize(m * groups);
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t grp = 0; grp < groups; ++grp) {
        float acc = 0.0f;
        const float* src = xf + r * k + grp * group_size;
        for (int64_t j = 0; j < group_size; ++j) acc += src[j];
        s.xsum[r * groups + grp] = acc;
      }
    }
    a.xsum = s.xsum.data();
  }
  const int64_t panels = (n + kPanel - 1) / kPanel;
  const int tasks = static_cast<double>(m) * n * k < 65536.0
                        ? 1
                        : static_cast<int>(std::min<int64_t>(panels, tp.size() * 4));
  tp.parallel_for(tasks, [&](int i) {
    int64_t b, e;
    split(panels, tasks, i, 1, &b, &e);
    if (b < e) kern.weight_only(a, b, e);
  });
  return ffi::Error::Success();
}

// Static quantized conv2d, NHWC: each block of output pixels is gathered (im2col, padded
// with the activation zero point) into a thread-local uint8 block and multiplied by the
// packed weight with the GEMM kernel, epilogue included.
ffi::Error QConvImpl(ffi::ThreadPool xla_pool, ffi::AnyBuffer x, ffi::AnyBuffer w, ffi::Buffer<ffi::F32> w_scale,
                     ffi::Buffer<ffi::S32> w_zp, ffi::Buffer<ffi::S32> col_sums,
                     ffi::Buffer<ffi::F32> x_scale, ffi::Buffer<ffi::S32> x_zp,
                     ffi::Buffer<ffi::F32> bias, ffi::Buffer<ffi::F32> out_scale,
                     ffi::Buffer<ffi::S32> out_zp, ffi::Result<ffi::AnyBuffer> out, int64_t kh,
                     int64_t kw, int64_t stride_h, int64_t stride_w, int64_t pad_t,
                     int64_t pad_l, int64_t dil_h, int64_t dil_w, int64_t out_h, int64_t out_w,
                     int64_t o, int64_t out_kind, int64_t relu, int64_t qlo, int64_t qhi) {
  if (g_isa.load() == kIsaNone) return invalid("this CPU has neither AVX512-VNNI nor AVX2");
  auto xd = x.dimensions();
  if (xd.size() != 4) return invalid("x must be NHWC");
  const int64_t batch = xd[0], h = xd[1], wd = xd[2], c = xd[3];
  const auto xt = x.element_type();
  if (xt != ffi::DataType::U8 && xt != ffi::DataType::S8) return invalid("x must be uint8/int8");
  if (kh <= 0 || kw <= 0 || stride_h <= 0 || stride_w <= 0 || dil_h <= 0 || dil_w <= 0 ||
      pad_t < 0 || pad_l < 0 || o <= 0 || c <= 0) {
    return invalid("bad conv attributes");
  }
  // Any output size is memory-safe: every input read is bounds-checked (else padding).
  if (out_h <= 0 || out_w <= 0) return invalid("output height and width must be positive");
  const int64_t k = kh * kw * c, kp = round_up(k, 4), nq = round_up(o, 16);
  if (w.element_type() != ffi::DataType::S8 || w.element_count() != static_cast<size_t>(kp * nq)) {
    return invalid("packed weight must be int8 with round_up(kh*kw*C, 4) * round_up(O, 16) bytes");
  }
  const int64_t ws = w_scale.element_count(), wz = w_zp.element_count();
  if (!(ws == 1 || ws == o) || !(wz == 0 || wz == 1 || wz == o)) {
    return invalid("weight scale / zero point must have 1 or O entries");
  }
  if (col_sums.element_count() != static_cast<size_t>(o)) return invalid("col_sums must have O entries");
  if (x_scale.element_count() != 1 || x_zp.element_count() > 1) {
    return invalid("conv takes a per-tensor activation scale / zero point");
  }
  const int64_t nb = bias.element_count();
  if (!(nb == 0 || nb == o)) return invalid("bias must have 0 or O entries");
  if (out_kind < kOutInt32 || out_kind > kOutS8) return invalid("bad out_kind");
  const bool requant = out_kind == kOutU8 || out_kind == kOutS8;
  if (requant && (out_scale.element_count() != 1 || out_zp.element_count() != 1)) {
    return invalid("requantized output needs one out_scale and one out_zero_point");
  }
  static const ffi::DataType kOutTypes[] = {ffi::DataType::S32, ffi::DataType::F32,
                                            ffi::DataType::U8, ffi::DataType::S8};
  auto od = out->dimensions();
  if (out->element_type() != kOutTypes[out_kind] || od.size() != 4 || od[0] != batch ||
      od[1] != out_h || od[2] != out_w || od[3] != o) {
    return invalid("output must be (N, out_h, out_w, O) with the dtype of out_kind");
  }
  const int64_t m = batch * out_h * out_w;
  if (m == 0) return ffi::Error::Success();

  const Kernels kern = kernels();
  Parallel tp(xla_pool);
  Scratch& s = t_scratch;
  const bool is_signed = xt == ffi::DataType::S8;
  const uint8_t flip = is_signed ? 0x80 : 0x00;
  const int32_t zx = (x_zp.element_count() ? x_zp.typed_data()[0] : 0) + (is_signed ? 128 : 0);
  if (zx < 0 || zx > 255) return invalid("x_zero_point outside the activation dtype's range");
  const uint8_t pad_byte = static_cast<uint8_t>(zx);
  const bool need_row_sums = wz != 0;

  GemmArgs base{};
  base.N = o;
  base.K = k;
  base.Kp = kp;
  base.B = w.typed_data<int8_t>();
  base.lda = kp;
  base.out_kind = static_cast<int>(out_kind);
  base.col_sums = col_sums.typed_data();
  base.zw = need_row_sums ? w_zp.typed_data() : nullptr;
  base.zw_stride = wz == o ? 1 : 0;
  base.zx = zx;
  base.col_offset = column_offsets(s.col_offset, base.col_sums, o, zx);
  base.sx = x_scale.typed_data()[0];
  base.sw = w_scale.typed_data();
  base.sw_stride = ws == o ? 1 : 0;
  base.bias = nb ? bias.typed_data() : nullptr;
  base.relu = relu ? 1 : 0;
  if (requant) {
    const float so = out_scale.typed_data()[0];
    s.rq_mult.resize(o);
    s.rq_bias.resize(o);
    for (int64_t j = 0; j < o; ++j) {
      const float ats = base.sx * base.sw[j * base.sw_stride];
      s.rq_mult[j] = ats / so;
      if (nb) s.rq_bias[j] = base.bias[j] / ats;
    }
    base.rq_mult = s.rq_mult.data();
    base.rq_bias = nb ? s.rq_bias.data() : nullptr;
    base.out_zp = out_zp.typed_data()[0];
    base.qlo = static_cast<int32_t>(qlo);
    base.qhi = static_cast<int32_t>(qhi);
  }
  ConvGeometry cg{};
  const uint8_t* xb = static_cast<const uint8_t*>(x.untyped_data());
  if (flip) {  // int8 input: move it to the uint8 domain once
    s.a.resize(batch * h * wd * c);
    for (size_t i = 0; i < s.a.size(); ++i) s.a[i] = xb[i] ^ flip;
    xb = s.a.data();
  }
  cg.x = xb;
  cg.h = h;
  cg.w = wd;
  cg.c = c;
  cg.kh = kh;
  cg.kw = kw;
  cg.sh = stride_h;
  cg.sw = stride_w;
  cg.pt = pad_t;
  cg.pl = pad_l;
  cg.dh = dil_h;
  cg.dw = dil_w;
  cg.out_h = out_h;
  cg.out_w = out_w;
  cg.pad = pad_byte;
  cg.out_elem = out_kind == kOutInt32 || out_kind == kOutF32 ? 4 : 1;
  base.M = m;
  base.out = out->untyped_data();
  // Split the output pixels over the pool in chunks of whole tiles.
  const int tasks = static_cast<int>(std::min<int64_t>((m + 95) / 96, tp.size() * 8));
  tp.parallel_for(tasks, [&](int t) {
    thread_local std::vector<uint8_t> scratch;
    thread_local std::vector<int32_t> sums;
    scratch.resize(6 * kp);
    sums.resize(6);
    int64_t b0, b1;
    split(m, tasks, t, 6, &b0, &b1);
    if (b0 < b1) kern.conv_rows(base, cg, b0, b1, scratch.data(), sums.data());
  });
  return ffi::Error::Success();
}

}  // namespace
}  // namespace jaxq

// The handler symbols are the library's interface (it is built with -fvisibility=hidden).
#pragma GCC visibility push(default)
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxqQGemm, jaxq::QGemmImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int64_t>("n")
                                  .Attr<int64_t>("k")
                                  .Attr<int64_t>("x_kind")
                                  .Attr<int64_t>("out_kind")
                                  .Attr<int64_t>("relu")
                                  .Attr<int64_t>("qlo")
                                  .Attr<int64_t>("qhi")
                                  .Attr<int64_t>("dyn_qmin")
                                  .Attr<int64_t>("dyn_qmax")
                                  .Attr<int64_t>("dyn_signed")
                                  .Attr<int64_t>("row_groups"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxqWeightOnly, jaxq::WeightOnlyImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("n")
                                  .Attr<int64_t>("k")
                                  .Attr<int64_t>("bits")
                                  .Attr<int64_t>("group_size")
                                  .Attr<int64_t>("relu"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxqQConv2d, jaxq::QConvImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int64_t>("kh")
                                  .Attr<int64_t>("kw")
                                  .Attr<int64_t>("stride_h")
                                  .Attr<int64_t>("stride_w")
                                  .Attr<int64_t>("pad_t")
                                  .Attr<int64_t>("pad_l")
                                  .Attr<int64_t>("dil_h")
                                  .Attr<int64_t>("dil_w")
                                  .Attr<int64_t>("out_h")
                                  .Attr<int64_t>("out_w")
                                  .Attr<int64_t>("o")
                                  .Attr<int64_t>("out_kind")
                                  .Attr<int64_t>("relu")
                                  .Attr<int64_t>("qlo")
                                  .Attr<int64_t>("qhi"));
#pragma GCC visibility pop

extern "C" {
// 2: AVX512-VNNI, 1: AVX2 + FMA, 0: neither (the backend is unavailable).
__attribute__((visibility("default"))) int jaxq_cpu_detected_isa() {
  return jaxq::g_detected_isa;
}
__attribute__((visibility("default"))) int jaxq_cpu_isa() { return jaxq::g_isa.load(); }
// Forces a lower ISA (tests of the AVX2 path); returns the ISA in effect.
__attribute__((visibility("default"))) int jaxq_cpu_set_isa(int isa) {
  if (isa < 0 || isa > jaxq::g_detected_isa) isa = jaxq::g_detected_isa;
  jaxq::g_isa.store(isa);
  return isa;
}
__attribute__((visibility("default"))) int jaxq_cpu_num_threads() {
  return jaxq::g_threads.load();
}
// Most threads a kernel uses (capped by XLA's intra-op pool); <= 0 restores the default.
__attribute__((visibility("default"))) int jaxq_cpu_set_num_threads(int threads) {
  jaxq::g_threads.store(threads > 0 ? threads : jaxq::default_threads());
  return jaxq::g_threads.load();
}
// Test hook: runs `tasks` tasks of ~20 us on the helper pool with `helpers` workers,
// without XLA (a forked child can call it even though XLA's own threads are gone).
// Returns how many tasks ran (-1 when another call holds the pool); *threads_used gets
// how many distinct threads ran them.
__attribute__((visibility("default"))) int jaxq_cpu_pool_selftest(int tasks, int helpers,
                                                                  int* threads_used) {
  std::mutex seen_mutex;
  std::vector<std::thread::id> seen;
  std::atomic<int> ran{0};
  const std::function<void(int)> fn = [&](int) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(20);
    while (std::chrono::steady_clock::now() < until) {
    }
    ran.fetch_add(1);
    std::lock_guard<std::mutex> lock(seen_mutex);
    if (std::find(seen.begin(), seen.end(), std::this_thread::get_id()) == seen.end()) {
      seen.push_back(std::this_thread::get_id());
    }
  };
  jaxq::SpinPool& pool = jaxq::SpinPool::get();
  if (!pool.try_acquire()) return -1;
  pool.run(std::make_shared<jaxq::Job>(tasks, &fn), helpers);
  pool.release();
  if (threads_used != nullptr) *threads_used = static_cast<int>(seen.size());
  return ran.load();
}
}

// Persistent worker pool; see thread_pool.h for the partitioning contract.
#include "pare/base/thread_pool.h"

#include <sched.h>

#include <memory>

#include "pare/base/error.h"

namespace pare {

namespace {
thread_local bool t_inside_parallel = false;
constexpr int kSpinIterations = 20000;  // ~tens of microseconds before sleeping
}  // namespace

ThreadPool::ThreadPool(int num_threads) : num_threads_(num_threads) {
  PARE_CHECK(num_threads >= 1, "thread count must be at least 1, got ", num_threads);
  errors_.resize(static_cast<size_t>(num_threads));
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  t_inside_parallel = true;
  for (;;) {
    uint64_t gen = generation_.load(std::memory_order_acquire);
    for (int spin = 0; gen == seen && spin < kSpinIterations; ++spin) {
#if defined(__x86_64__)
      __builtin_ia32_pause();
#endif
      gen = generation_.load(std::memory_order_acquire);
    }
    if (gen == seen) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return generation_.load() != seen; });
      gen = generation_.load();
    }
    seen = gen;
    if (stop_.load()) return;
    int64_t n = job_n_;
    int64_t b = chunk_begin(n, num_threads_, index), e = chunk_begin(n, num_threads_, index + 1);
    if (b < e) {
      try {
        (*job_)(b, e, index);
      } catch (...) {
        errors_[static_cast<size_t>(index)] = std::current_exception();
      }
    }
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn,
                              int64_t min_parallel) {
  if (n <= 0) return;
  if (num_threads_ == 1 || n < min_parallel || n < 2 || t_inside_parallel) {
    fn(0, n, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    job_n_ = n;
    pending_.store(num_threads_ - 1, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  t_inside_parallel = true;
  int64_t e = chunk_begin(n, num_threads_, 1);
  if (e > 0) {
    try {
      fn(0, e, 0);
    } catch (...) {
      errors_[0] = std::current_exception();
    }
  }
  t_inside_parallel = false;
  // Spin while the workers finish; yield if one of them has lost its core to
  // another process, so we do not burn the core it needs.
  for (int spin = 0; pending_.load(std::memory_order_acquire) != 0; ++spin) {
    if (spin < kSpinIterations) {
#if defined(__x86_64__)
      __builtin_ia32_pause();
#endif
    } else {
      std::this_thread::yield();
    }
  }
  for (auto& err : errors_) {
    if (err) {
      std::exception_ptr first = err;
      for (auto& e2 : errors_) e2 = nullptr;
      std::rethrow_exception(first);
    }
  }
}

namespace {
std::unique_ptr<ThreadPool>& global_pool() {
  static std::unique_ptr<ThreadPool> pool;
  return pool;
}
}  // namespace

int default_num_threads() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc > 0 ? static_cast<int>(hc) : 1;
}

ThreadPool& thread_pool() {
  auto& p = global_pool();
  if (!p) p = std::make_unique<ThreadPool>(default_num_threads());
  return *p;
}

void set_num_threads(int n) {
  PARE_CHECK(n >= 1, "--threads must be at least 1, got ", n);
  auto& p = global_pool();
  if (p && p->num_threads() == n) return;
  p.reset();
  p = std::make_unique<ThreadPool>(n);
}

int num_threads() { return thread_pool().num_threads(); }

}  // namespace pare

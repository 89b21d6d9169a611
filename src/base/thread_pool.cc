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
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this] { worker_loop(0); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
    job_id_.fetch_add(1);
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::run_chunks(uint32_t id) {
  const uint64_t tag = static_cast<uint64_t>(id) << 32;
  for (;;) {
    uint64_t state = claim_.load(std::memory_order_acquire);
    if ((state & ~uint64_t{0xffffffff}) != tag) return;  // a newer job, or none
    const int chunk = static_cast<int>(state & 0xffffffff);
    if (chunk >= num_threads_) return;
    if (!claim_.compare_exchange_weak(state, state + 1, std::memory_order_acq_rel)) continue;
    // Claimed: the job's caller waits for this chunk, so job_ stays valid.
    const int64_t n = job_n_;
    const int64_t b = chunk_begin(n, num_threads_, chunk), e = chunk_begin(n, num_threads_, chunk + 1);
    if (b < e) {
      try {
        (*job_)(b, e, chunk);
      } catch (...) {
        errors_[static_cast<size_t>(chunk)] = std::current_exception();
      }
    }
    done_.fetch_add(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::worker_loop(int) {
  uint32_t seen = 0;
  t_inside_parallel = true;
  for (;;) {
    uint32_t id = job_id_.load(std::memory_order_acquire);
    for (int spin = 0; id == seen && spin < kSpinIterations; ++spin) {
#if defined(__x86_64__)
      __builtin_ia32_pause();
#endif
      id = job_id_.load(std::memory_order_acquire);
    }
    if (id == seen) {
      std::unique_lock<std::mutex> lock(mutex_);
      sleepers_.fetch_add(1);
      wake_.wait(lock, [&] { return job_id_.load() != seen; });
      sleepers_.fetch_sub(1);
      id = job_id_.load();
    }
    seen = id;
    if (stop_.load()) return;
    run_chunks(id);
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn,
                              int64_t min_parallel) {
  if (n <= 0) return;
  if (num_threads_ == 1 || n < min_parallel || n < 2 || t_inside_parallel) {
    fn(0, n, 0);
    return;
  }
  job_ = &fn;
  job_n_ = n;
  done_.store(0, std::memory_order_relaxed);
  const uint32_t id = job_id_.load(std::memory_order_relaxed) + 1;
  claim_.store(static_cast<uint64_t>(id) << 32, std::memory_order_release);
  job_id_.store(id);  // seq_cst with the load below: no store-load reordering
  if (sleepers_.load() > 0) {
    std::lock_guard<std::mutex> lock(mutex_);  // pairs with the sleeper's check under the lock
    wake_.notify_all();
  }
  t_inside_parallel = true;
  run_chunks(id);
  t_inside_parallel = false;
  // Every chunk is claimed; wait for those still running on workers. Yield
  // after a while in case a worker holding one has lost its core.
  for (int spin = 0; done_.load(std::memory_order_acquire) != num_threads_; ++spin) {
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

namespace {
thread_local int t_serial_depth = 0;  // SerialScopes alive on this thread
}  // namespace

SerialScope::SerialScope() { ++t_serial_depth; }
SerialScope::~SerialScope() { --t_serial_depth; }

ThreadPool& thread_pool() {
  if (t_serial_depth > 0) {
    thread_local ThreadPool serial(1);  // starts no workers: loops run inline
    return serial;
  }
  auto& p = global_pool();
  if (!p) p = std::make_unique<ThreadPool>(default_num_threads());
  return *p;
}

void set_num_threads(int n) {
  if (n < 1) fail("--threads must be at least 1, got ", n);  // a setting, not an invariant: no source location
  auto& p = global_pool();
  if (p && p->num_threads() == n) return;
  p.reset();
  p = std::make_unique<ThreadPool>(n);
}

int num_threads() { return thread_pool().num_threads(); }

}  // namespace pare

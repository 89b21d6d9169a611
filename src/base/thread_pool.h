// A persistent pool of worker threads with static, deterministic partitioning.
//
// Threads are started once and reused for every parallel loop (starting
// threads per loop is what makes tiny-dnn slow). parallel_for splits [0, n)
// into exactly num_threads() contiguous chunks whose bounds depend only on n
// and the thread count, so a reduction written per chunk and combined in
// chunk order gives the same bits on every run with the same thread count.
// Chunks are claimed, not assigned: the caller and whichever workers are
// running take the next unclaimed chunk until none is left. A worker that has
// lost its core to another process therefore never holds the loop up (the
// caller runs its chunk instead), which keeps two threads on a busy machine
// from being slower than one. Which thread runs a chunk never changes what
// the chunk computes, so results stay the same bits. Workers spin briefly
// before sleeping, so back-to-back loops in a step do not pay a wake-up each.
//
// Thread safety: one parallel_for at a time per pool; nested calls from inside
// a chunk run serially on the calling worker. Threads that work concurrently
// each hold a SerialScope (below) instead of sharing the global pool.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace pare {

class ThreadPool {
 public:
  // REQUIRES: num_threads >= 1. num_threads - 1 workers are started.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Calls fn(begin, end, chunk) for each of num_threads() chunks of [0, n);
  // `chunk` is the chunk's index (not a thread id), so per-chunk scratch
  // indexed by it is never shared by two running calls.
  // Chunks that would be empty are skipped. Runs serially when n < min_parallel
  // or when called from inside another parallel_for. If fn throws in any
  // chunk, the first exception (by chunk index) is rethrown here after all
  // chunks have finished.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn,
                    int64_t min_parallel = 1);

  // Bounds of chunk `chunk` of [0, n) split into `parts` parts.
  static int64_t chunk_begin(int64_t n, int parts, int chunk) { return n * chunk / parts; }

 private:
  void worker_loop(int index);

  // Runs unclaimed chunks of job `id` until none is left.
  void run_chunks(uint32_t id);

  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  // The current job; written before its id is published, stable until all
  // its chunks are done.
  const std::function<void(int64_t, int64_t, int)>* job_ = nullptr;
  int64_t job_n_ = 0;
  std::atomic<uint32_t> job_id_{0};  // id of the latest job (workers wait for a change)
  std::atomic<uint64_t> claim_{0};   // (job id << 32) | next unclaimed chunk
  std::atomic<int> done_{0};         // chunks of the current job finished
  std::atomic<int> sleepers_{0};     // workers blocked on wake_
  std::atomic<bool> stop_{false};
  std::vector<std::exception_ptr> errors_;  // one slot per chunk
};

// The process-wide pool used by tensor ops. Created on first use with
// default_num_threads() threads; set_num_threads replaces it (not while a loop runs).
// Inside a SerialScope, thread_pool() and num_threads() answer for the
// calling thread alone: a pool of one thread.
ThreadPool& thread_pool();
void set_num_threads(int n);
int num_threads();

// While alive, every parallel loop started on the calling thread runs on that
// thread alone, as with one thread: thread_pool() returns a per-thread pool of
// one thread (no workers) and num_threads() returns 1. Why: the global pool
// takes one parallel_for at a time, so several std::threads that each train a
// model (independent runs of a study) must not share it; and a run then
// computes exactly what a one-thread run computes, whichever thread runs it
// and whatever else runs beside it. Scopes nest.
class SerialScope {
 public:
  SerialScope();
  ~SerialScope();
  SerialScope(const SerialScope&) = delete;
  SerialScope& operator=(const SerialScope&) = delete;
};
// The number of cores this process may run on (sched_getaffinity).
int default_num_threads();

}  // namespace pare

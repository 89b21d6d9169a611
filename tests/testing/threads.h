// Test helper: the pool's thread count set for a scope.
#pragma once

#include "pare/base/thread_pool.h"

namespace pare::testing {

// Sets the pool's thread count for its lifetime, restoring the previous one.
// (For a one-thread run inside a test, pare::SerialScope is cheaper: it does
// not replace the pool.)
class ThreadsFor {
 public:
  explicit ThreadsFor(int n) : previous_(num_threads()) { set_num_threads(n); }
  ~ThreadsFor() { set_num_threads(previous_); }
  ThreadsFor(const ThreadsFor&) = delete;
  ThreadsFor& operator=(const ThreadsFor&) = delete;

 private:
  int previous_;
};

}  // namespace pare::testing

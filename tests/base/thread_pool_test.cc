// ThreadPool: exact coverage, deterministic chunking, nesting, global pool.
#include "pare/base/thread_pool.h"

#include "pare/base/error.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>
#include <string>
#include <mutex>
#include <thread>
#include <tuple>
#include <vector>

namespace pare {
namespace {

struct Chunk {
  int64_t begin, end;
  int index;
  bool operator<(const Chunk& o) const { return index < o.index; }
  bool operator==(const Chunk& o) const {
    return begin == o.begin && end == o.end && index == o.index;
  }
};

std::vector<Chunk> record_chunks(ThreadPool& pool, int64_t n) {
  std::mutex mu;
  std::vector<Chunk> chunks;
  pool.parallel_for(n, [&](int64_t b, int64_t e, int c) {
    std::lock_guard<std::mutex> lock(mu);
    chunks.push_back({b, e, c});
  });
  std::sort(chunks.begin(), chunks.end());
  return chunks;
}

TEST(ThreadPool, CoversRangeExactlyOnce) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    for (int64_t n : {0, 1, 2, 3, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      for (auto& h : hits) h.store(0);
      pool.parallel_for(n, [&](int64_t b, int64_t e, int) {
        ASSERT_LE(0, b);
        ASSERT_LT(b, e);  // empty chunks are skipped
        ASSERT_LE(e, n);
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
      });
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1)
            << "index " << i << " of n=" << n << " with " << threads << " threads";
    }
  }
}

TEST(ThreadPool, ChunkBoundsDependOnlyOnNAndThreadCount) {
  for (int threads : {2, 3}) {
    for (int64_t n : {2, 3, 5, 1000, 1001}) {
      ThreadPool p1(threads), p2(threads);
      auto a = record_chunks(p1, n);
      auto b = record_chunks(p1, n);  // same pool, second run
      auto c = record_chunks(p2, n);  // fresh pool
      EXPECT_EQ(a, b);
      EXPECT_EQ(a, c);
      // The bounds are exactly the documented chunk_begin partition.
      std::vector<Chunk> want;
      for (int k = 0; k < threads; ++k) {
        int64_t lo = ThreadPool::chunk_begin(n, threads, k);
        int64_t hi = ThreadPool::chunk_begin(n, threads, k + 1);
        if (lo < hi) want.push_back({lo, hi, k});
      }
      EXPECT_EQ(a, want) << "n=" << n << " threads=" << threads;
    }
  }
}

TEST(ThreadPool, ChunkBeginPartitionsEvenly) {
  EXPECT_EQ(ThreadPool::chunk_begin(10, 3, 0), 0);
  EXPECT_EQ(ThreadPool::chunk_begin(10, 3, 1), 3);
  EXPECT_EQ(ThreadPool::chunk_begin(10, 3, 2), 6);
  EXPECT_EQ(ThreadPool::chunk_begin(10, 3, 3), 10);
}

TEST(ThreadPool, UsesMoreThanOneThreadForSlowChunks) {
  // Chunks are claimed by whichever thread is free, so a fast loop may run
  // entirely on the caller; chunks that take a while must be shared.
  ThreadPool pool(3);
  std::mutex mu;
  std::vector<int> indices;
  std::vector<std::thread::id> ids;
  pool.parallel_for(300, [&](int64_t, int64_t, int c) {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    std::lock_guard<std::mutex> lock(mu);
    indices.push_back(c);
    ids.push_back(std::this_thread::get_id());
  });
  std::sort(indices.begin(), indices.end());
  EXPECT_EQ(indices, (std::vector<int>{0, 1, 2}));
  std::sort(ids.begin(), ids.end());
  EXPECT_GE(std::unique(ids.begin(), ids.end()) - ids.begin(), 2);
}

TEST(ThreadPool, MinParallelRunsSerially) {
  ThreadPool pool(3);
  std::vector<Chunk> chunks;
  pool.parallel_for(100, [&](int64_t b, int64_t e, int c) { chunks.push_back({b, e, c}); },
                    /*min_parallel=*/1000);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0], (Chunk{0, 100, 0}));
}

TEST(ThreadPool, NestedParallelForRunsSeriallyWithoutDeadlock) {
  ThreadPool pool(3);
  // Run in a future so a deadlock fails the test instead of hanging CTest.
  auto fut = std::async(std::launch::async, [&] {
    std::vector<std::atomic<int>> hits(30 * 50);
    for (auto& h : hits) h.store(0);
    std::atomic<int> inner_calls{0}, inner_not_serial{0};
    pool.parallel_for(30, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) {
        pool.parallel_for(50, [&](int64_t ib, int64_t ie, int c) {
          inner_calls.fetch_add(1);
          if (ib != 0 || ie != 50 || c != 0) inner_not_serial.fetch_add(1);
          for (int64_t j = ib; j < ie; ++j) hits[static_cast<size_t>(i * 50 + j)].fetch_add(1);
        });
      }
    });
    for (auto& h : hits) EXPECT_EQ(h.load(), 1);
    EXPECT_EQ(inner_calls.load(), 30);  // one serial call per outer item
    EXPECT_EQ(inner_not_serial.load(), 0);
  });
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(20)), std::future_status::ready)
      << "nested parallel_for deadlocked";
  fut.get();
}

TEST(ThreadPool, ManyBackToBackLoops) {
  ThreadPool pool(3);
  std::atomic<int64_t> total{0};
  for (int rep = 0; rep < 200; ++rep)
    pool.parallel_for(10, [&](int64_t b, int64_t e, int) { total.fetch_add(e - b); });
  EXPECT_EQ(total.load(), 2000);
}

TEST(ThreadPool, ExceptionIsRethrownAfterAllChunksFinish) {
  ThreadPool pool(3);
  for (int thrower : {0, 1, 2}) {
    std::atomic<int> finished{0};
    try {
      pool.parallel_for(3, [&](int64_t, int64_t, int c) {
        if (c == thrower) throw std::runtime_error("chunk " + std::to_string(c));
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        finished.fetch_add(1);
      });
      ADD_FAILURE() << "no exception from chunk " << thrower;
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()), "chunk " + std::to_string(thrower));
    }
    EXPECT_EQ(finished.load(), 2) << "other chunks must finish before the rethrow";
  }
  // Several throwers: the lowest chunk index wins.
  try {
    pool.parallel_for(3, [&](int64_t, int64_t, int c) {
      if (c >= 1) throw std::runtime_error("chunk " + std::to_string(c));
    });
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "chunk 1");
  }
  // The pool is still parallel and error-free afterwards.
  auto chunks = record_chunks(pool, 300);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_NO_THROW(pool.parallel_for(300, [](int64_t, int64_t, int) {}));
}

TEST(ThreadPool, RejectsZeroThreads) { EXPECT_THROW({ ThreadPool pool(0); }, Error); }

TEST(GlobalPool, SetNumThreadsChangesNumThreads) {
  const int before = num_threads();
  EXPECT_GE(before, 1);
  set_num_threads(2);
  EXPECT_EQ(num_threads(), 2);
  EXPECT_EQ(thread_pool().num_threads(), 2);
  set_num_threads(1);
  EXPECT_EQ(num_threads(), 1);
  set_num_threads(3);
  EXPECT_EQ(num_threads(), 3);
  EXPECT_THROW(set_num_threads(0), Error);
  EXPECT_EQ(num_threads(), 3);  // a rejected value leaves the pool alone
  set_num_threads(before);
  EXPECT_EQ(num_threads(), before);
}

TEST(GlobalPool, DefaultThreadsIsPositive) { EXPECT_GE(default_num_threads(), 1); }

// Several std::threads, each in a SerialScope, run loops at the same time as
// the main thread uses the global pool: each scoped thread sees one thread
// and one chunk covering the range, and every loop computes its own sum.
TEST(SerialScope, ThreadsRunLoopsInlineBesideTheGlobalPool) {
  const int before = num_threads();
  set_num_threads(3);
  ThreadPool* global = &thread_pool();
  std::atomic<int> wrong{0};
  auto scoped = [&](int64_t salt) {
    SerialScope serial;
    if (num_threads() != 1 || &thread_pool() == global) ++wrong;
    const std::thread::id me = std::this_thread::get_id();
    for (int rep = 0; rep < 2000; ++rep) {
      const int64_t n = 50 + rep % 7;
      int64_t sum = 0;
      thread_pool().parallel_for(n, [&](int64_t b, int64_t e, int c) {
        if (b != 0 || e != n || c != 0 || std::this_thread::get_id() != me) ++wrong;
        for (int64_t i = b; i < e; ++i) sum += i * salt;
      });
      if (sum != salt * n * (n - 1) / 2) ++wrong;
    }
  };
  std::vector<std::thread> threads;
  for (int64_t t = 1; t <= 3; ++t) threads.emplace_back(scoped, t);
  for (int rep = 0; rep < 2000; ++rep) {  // the main thread keeps the global pool busy
    std::vector<int64_t> part(3, 0);
    thread_pool().parallel_for(999, [&](int64_t b, int64_t e, int c) {
      for (int64_t i = b; i < e; ++i) part[static_cast<size_t>(c)] += i;
    });
    if (part[0] + part[1] + part[2] != 999 * 998 / 2) ++wrong;
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(num_threads(), 3);  // outside a scope: the global pool again
  {
    SerialScope outer;
    {
      SerialScope inner;
      EXPECT_EQ(num_threads(), 1);
    }
    EXPECT_EQ(num_threads(), 1);  // scopes nest
  }
  EXPECT_EQ(num_threads(), 3);
  set_num_threads(before);
}

}  // namespace
}  // namespace pare

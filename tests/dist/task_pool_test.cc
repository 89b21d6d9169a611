// The task pool with the single-process communicator: its in-memory queue
// and threads (the MPI side runs under mpirun in mpi_task_pool_test.cc).
// Also: a single process refuses point-to-point messages.
#include "pare/dist/task_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "pare/base/error.h"

namespace pare::dist {
namespace {

std::vector<std::string> numbered_tasks(int n) {
  std::vector<std::string> t;
  for (int i = 0; i < n; ++i) t.push_back("task" + std::to_string(i));
  return t;
}

TEST(TaskPool, LocalRunsEveryTaskOnceAndReturnsResultsInIndexOrder) {
  LocalCommunicator comm;
  const int n = 200;
  std::vector<std::atomic<int>> runs(n);
  std::atomic<int> running{0}, most_at_once{0};
  std::set<std::thread::id> threads_seen;
  std::mutex seen_mu;
  const auto run = [&](int64_t i, const std::string& task) {
    const int now = ++running;
    for (int was = most_at_once.load();
         now > was && !most_at_once.compare_exchange_weak(was, now);) {
    }
    {
      std::lock_guard<std::mutex> lock(seen_mu);
      threads_seen.insert(std::this_thread::get_id());
    }
    ++runs[static_cast<size_t>(i)];
    std::this_thread::sleep_for(std::chrono::microseconds(200 * (i % 7)));
    --running;
    return task + "=" + std::to_string(i * i);
  };
  std::atomic<int> inside{0};
  std::vector<int64_t> reported;
  const auto on_result = [&](int64_t i, const TaskResult& r) {
    EXPECT_EQ(++inside, 1) << "on_result entered twice at once";
    EXPECT_EQ(r.rank, 0);
    EXPECT_EQ(r.text, "task" + std::to_string(i) + "=" + std::to_string(i * i));
    reported.push_back(i);
    --inside;
  };
  const std::vector<TaskResult> out = run_task_pool(comm, numbered_tasks(n), 3, run, on_result);
  ASSERT_EQ(out.size(), static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(runs[static_cast<size_t>(i)].load(), 1) << "task " << i;
    EXPECT_EQ(out[static_cast<size_t>(i)].text,
              "task" + std::to_string(i) + "=" + std::to_string(i * i));
    EXPECT_EQ(out[static_cast<size_t>(i)].rank, 0);
  }
  EXPECT_EQ(std::set<int64_t>(reported.begin(), reported.end()).size(), static_cast<size_t>(n));
  EXPECT_EQ(reported.size(), static_cast<size_t>(n));
  // Three workers: tasks ran on threads other than this one, several at
  // once (at least two: a machine this busy may start the third late).
  EXPECT_GE(threads_seen.size(), 2u);
  EXPECT_LE(threads_seen.size(), 3u);
  EXPECT_EQ(threads_seen.count(std::this_thread::get_id()), 0u);
  EXPECT_GE(most_at_once.load(), 2);
  EXPECT_LE(most_at_once.load(), 3);
}

TEST(TaskPool, LocalWithNoTasksOrFewerTasksThanWorkers) {
  LocalCommunicator comm;
  int calls = 0;
  const auto none = run_task_pool(comm, {}, 4, [&](int64_t, const std::string&) {
    ++calls;
    return std::string("x");
  });
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(calls, 0);
  std::atomic<int> ran{0};
  const auto two = run_task_pool(comm, {"a", "b"}, 5, [&](int64_t i, const std::string& t) {
    ++ran;
    return t + std::to_string(i);
  });
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].text, "a0");
  EXPECT_EQ(two[1].text, "b1");
  EXPECT_EQ(ran.load(), 2);
}

// The task's own exception comes back (a single process adds no rank), and
// no task starts after it: with one worker, the tasks after it never run.
TEST(TaskPool, LocalFailureRethrowsTheTasksExceptionAndStartsNoMoreTasks) {
  LocalCommunicator comm;
  std::vector<int> ran;
  const auto run = [&](int64_t i, const std::string&) -> std::string {
    ran.push_back(static_cast<int>(i));
    if (i == 3) fail("task 3 cannot read its file");
    return "ok";
  };
  try {
    run_task_pool(comm, numbered_tasks(10), 1, run);
    ADD_FAILURE() << "the pool returned although task 3 raised";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "task 3 cannot read its file");
  }
  EXPECT_EQ(ran, (std::vector<int>{0, 1, 2, 3}));
  // Not only pare::Error: any exception comes back as it was.
  EXPECT_THROW(run_task_pool(comm, numbered_tasks(4), 2,
                             [](int64_t i, const std::string&) -> std::string {
                               if (i == 1) throw std::out_of_range("index 1");
                               return "";
                             }),
               std::out_of_range);
}

TEST(TaskPool, LocalFailureOfOnResultStopsThePool) {
  LocalCommunicator comm;
  std::atomic<int> ran{0};
  try {
    run_task_pool(
        comm, numbered_tasks(20), 1,
        [&](int64_t, const std::string&) {
          ++ran;
          return std::string("r");
        },
        [](int64_t i, const TaskResult&) {
          if (i == 4) fail("cannot write the summary after task 4");
        });
    ADD_FAILURE() << "the pool returned although on_result raised";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "cannot write the summary after task 4");
  }
  EXPECT_EQ(ran.load(), 5);
}

TEST(TaskPool, RefusesNoWorkers) {
  LocalCommunicator comm;
  const auto run = [](int64_t, const std::string&) { return std::string(); };
  try {
    run_task_pool(comm, {"a"}, 0, run);
    ADD_FAILURE() << "0 workers accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("at least one worker"), std::string::npos) << e.what();
  }
}

TEST(Communicator, LocalRefusesMessages) {
  LocalCommunicator comm;
  const std::byte b[3] = {};
  try {
    comm.send(std::span<const std::byte>(b, 3), 1, 0);
    ADD_FAILURE() << "send to rank 1 of a single process";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1 does not exist"), std::string::npos) << e.what();
  }
  try {
    comm.receive(Communicator::kAnySource, 0);
    ADD_FAILURE() << "receive in a single process";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no other rank"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace pare::dist

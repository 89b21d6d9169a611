// The task pool under mpirun (CTest runs it with -np 2 and -np 4). Not
// GoogleTest: every rank runs the same checks and counts its own failures;
// the total over ranks decides every rank's exit code (as in
// mpi_allreduce_test.cc).
//
//   mpi_task_pool_test check K   the checks below, K = the launched rank count
//   mpi_task_pool_test fail R    every task that lands on rank R raises; each
//                                rank prints the error it gets and returns 1
//                                (run through expect_job_stops.sh)
//
// Checks: every task runs exactly once, on some rank, and its result (with
// the rank that ran it) reaches rank 0 in index order, for tasks and results
// from empty to 300 KB and worker counts that differ by rank; on_result sees
// every task once; assignment is dynamic (a rank whose tasks take 16 times
// longer does far fewer than its even share); no tasks and fewer tasks than
// workers work; point-to-point messages between two ranks arrive whole and in order.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "pare/base/error.h"
#include "pare/dist/mpi_communicator.h"
#include "pare/dist/task_pool.h"
#include "mpi_expect.h"

namespace {

using pare::dist::Communicator;
using pare::dist::MpiCommunicator;
using pare::dist::run_task_pool;
using pare::dist::TaskResult;

using pare::testing::g_failures;
using pare::testing::g_rank;

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

// Task i's text and the result it must give: some empty, one of 300 KB each way.
std::string task_text(int64_t i) {
  if (i == 7) return std::string(300000, 'p');
  if (i % 5 == 0) return "";
  std::string t = "t";  // (not "t" + ...: GCC 12 warns falsely about that at -O3, -Wrestrict)
  return t.append(std::to_string(i));
}
std::string expected_result(int64_t i, const std::string& task) {
  if (i == 11) return std::string(300000, static_cast<char>('a' + i % 26));
  return std::to_string(i) + ":" + std::to_string(task.size()) + ":" + task.substr(0, 8);
}

// Tasks 0..n-1 with `workers` threads on this rank: each runs once, results
// are right and in order on rank 0, and the rank in each result is the one
// that ran it.
void check_every_task_once(Communicator& comm, int n, int workers) {
  const int k = comm.size();
  std::vector<double> runs(static_cast<size_t>(n), 0.0), ran_here(static_cast<size_t>(n), 0.0);
  std::mutex mu;
  std::vector<std::string> tasks;
  for (int i = 0; i < n; ++i) tasks.push_back(task_text(i));
  const auto run = [&](int64_t i, const std::string& task) {
    EXPECT(task == task_text(i), "task %lld arrived with %zu bytes, not its own",
           static_cast<long long>(i), task.size());
    {
      std::lock_guard<std::mutex> lock(mu);
      runs[static_cast<size_t>(i)] += 1;
      ran_here[static_cast<size_t>(i)] = comm.rank() + 1;
    }
    sleep_ms(static_cast<int>(1 + i % 3));
    return expected_result(i, task);
  };
  std::set<int64_t> reported;
  const auto on_result = [&](int64_t i, const TaskResult& r) {
    EXPECT(comm.rank() == 0, "on_result called on rank %d", comm.rank());
    EXPECT(reported.insert(i).second, "on_result twice for task %lld", static_cast<long long>(i));
    EXPECT(r.text == expected_result(i, task_text(i)), "on_result: task %lld's result is wrong",
           static_cast<long long>(i));
  };
  const std::vector<TaskResult> out = run_task_pool(
      comm, comm.rank() == 0 ? tasks : std::vector<std::string>{}, workers, run, on_result);
  // Every task ran exactly once over all ranks; who ran it, as the ranks saw it.
  comm.allreduce_sum(std::span<double>(runs));
  comm.allreduce_sum(std::span<double>(ran_here));
  std::set<int> ranks_used;
  for (int i = 0; i < n; ++i)
    EXPECT(runs[static_cast<size_t>(i)] == 1, "n=%d: task %d ran %g times", n, i,
           runs[static_cast<size_t>(i)]);
  if (comm.rank() != 0) {
    EXPECT(out.empty(), "rank %d got %zu results (only rank 0 gets them)", comm.rank(), out.size());
    return;
  }
  EXPECT(static_cast<int>(reported.size()) == n, "on_result saw %zu of %d tasks", reported.size(),
         n);
  EXPECT(static_cast<int>(out.size()) == n, "%zu results for %d tasks", out.size(), n);
  for (int i = 0; i < n && i < static_cast<int>(out.size()); ++i) {
    const TaskResult& r = out[static_cast<size_t>(i)];
    EXPECT(r.text == expected_result(i, task_text(i)), "result %d is wrong (%zu bytes)", i,
           r.text.size());
    EXPECT(r.rank == static_cast<int>(ran_here[static_cast<size_t>(i)]) - 1,
           "result %d says rank %d ran it; rank %g did", i, r.rank,
           ran_here[static_cast<size_t>(i)] - 1);
    EXPECT(r.rank >= 0 && r.rank < k, "result %d from rank %d", i, r.rank);
    ranks_used.insert(r.rank);
  }
  std::printf("task pool: %d tasks over %d ranks, %zu ranks ran some\n", n, k, ranks_used.size());
}

// Rank 1's tasks take 80 ms, every other rank's 5 ms, one worker each: with
// dynamic assignment rank 1 does far fewer than an even share (n / K).
void check_dynamic_assignment(Communicator& comm) {
  const int k = comm.size();
  const int n = 12 * k;
  const auto run = [&](int64_t i, const std::string&) {
    sleep_ms(comm.rank() == 1 ? 80 : 5);
    return std::to_string(i);
  };
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<TaskResult> out = run_task_pool(
      comm, std::vector<std::string>(static_cast<size_t>(comm.rank() == 0 ? n : 0)), 1, run);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (comm.rank() != 0) return;
  std::vector<int> per_rank(static_cast<size_t>(k), 0);
  for (const TaskResult& r : out)
    if (r.rank >= 0 && r.rank < k) ++per_rank[static_cast<size_t>(r.rank)];
  std::printf("dynamic assignment: %d tasks in %.2f s; rank 1 (slow) did %d, rank 0 did %d\n", n,
              seconds, per_rank[1], per_rank[0]);
  // An even split would give rank 1 n / K = 12 tasks, 0.96 s of them.
  EXPECT(per_rank[1] <= 4, "the slow rank did %d of %d tasks (even share %d)", per_rank[1], n,
         n / k);
  int done = 0;
  for (int c : per_rank) done += c;
  EXPECT(done == n, "%d of %d results", done, n);
}

// Messages between ranks 0 and 1: whole, in order, with the sender's rank;
// misuse raises pare::Error.
void check_messages(Communicator& comm) {
  if (comm.rank() > 1) return;
  const int tag = 11;
  const std::string small = "hello from rank 1";
  const std::vector<std::byte> big(1 << 20, std::byte{0x5A});
  if (comm.rank() == 1) {
    comm.send(std::as_bytes(std::span<const char>(small.data(), small.size())), 0, tag);
    comm.send(big, 0, tag);
    comm.send({}, 0, tag);
  } else {
    const Communicator::Message a = comm.receive(Communicator::kAnySource, tag);
    EXPECT(a.source == 1, "message from rank %d", a.source);
    EXPECT(std::string(reinterpret_cast<const char*>(a.bytes.data()), a.bytes.size()) == small,
           "first message has %zu bytes", a.bytes.size());
    const Communicator::Message b = comm.receive(1, tag);
    EXPECT(b.bytes == big, "1 MiB message arrived with %zu bytes or changed", b.bytes.size());
    const Communicator::Message c = comm.receive(1, tag);
    EXPECT(c.bytes.empty() && c.source == 1, "empty message arrived with %zu bytes",
           c.bytes.size());
  }
  bool threw = false;
  try {
    comm.send({}, comm.rank(), tag);
  } catch (const pare::Error&) {
    threw = true;
  }
  EXPECT(threw, "a message to this rank itself did not raise");
  threw = false;
  try {
    comm.send({}, 0, Communicator::kMaxTag + 1);
  } catch (const pare::Error&) {
    threw = true;
  }
  EXPECT(threw, "tag %d did not raise", Communicator::kMaxTag + 1);
}

int run_checks(int want_k) {
  MpiCommunicator comm;
  g_rank = comm.rank();
  const int k = comm.size();
  EXPECT(k == want_k, "size() is %d, mpirun started %d ranks", k, want_k);
  check_messages(comm);
  check_every_task_once(comm, 120, 1 + comm.rank() % 2);  // 1 or 2 workers by rank
  check_every_task_once(comm, 0, 2);
  check_every_task_once(comm, 3, 2);  // fewer tasks than workers (2K of them)
  if (k > 1) check_dynamic_assignment(comm);
  std::vector<double> total = {static_cast<double>(g_failures)};
  comm.allreduce_sum(std::span<double>(total));
  if (g_rank == 0)
    std::printf("mpi_task_pool_test: %d ranks, %d failed checks in all\n", k,
                static_cast<int>(total[0]));
  return total[0] == 0 ? 0 : 1;
}

// Every task that lands on rank `failing` raises; the others take 10 ms.
// Each rank must get pare::Error with the failure's message and rank.
int run_failing(int failing) {
  try {
    MpiCommunicator comm;  // in the try block, as the CLI holds it
    g_rank = comm.rank();
    const auto run = [&](int64_t i, const std::string&) -> std::string {
      if (comm.rank() == failing) pare::fail("rank ", failing, " fails task ", i, " on purpose");
      sleep_ms(10);
      return "ok";
    };
    run_task_pool(comm, std::vector<std::string>(comm.rank() == 0 ? 40 : 0), 1, run);
    std::printf("rank %d: the pool returned although a task failed\n", comm.rank());
    return 0;
  } catch (const pare::Error& e) {
    std::fprintf(stderr, "rank %d: error: %s\n", g_rank, e.what());
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "check" && argc > 2) return run_checks(std::atoi(argv[2]));
  if (mode == "fail" && argc > 2) return run_failing(std::atoi(argv[2]));
  std::fprintf(stderr, "usage: mpi_task_pool_test check K | fail R\n");
  return 2;
}

// The task pool of sweeps (task_pool.h): rank 0's queue, coordinator and
// workers, and the workers of the other ranks.
#include "pare/dist/task_pool.h"

#include <cstring>
#include <exception>
#include <mutex>
#include <string_view>
#include <thread>

#include "pare/base/error.h"

namespace pare::dist {

namespace {

constexpr int kRequestTag = 7301;  // worker on rank r > 0 -> rank 0
constexpr int kReplyTag = 7302;    // rank 0 -> that worker

enum class Kind : uint8_t {
  // requests
  kReady = 1,   // a worker's first request
  kResult = 2,  // task `index` returned `text`; the worker wants another
  kFailed = 3,  // task `index` raised; `text` is the message
  // replies
  kTask = 4,   // run task `index`, whose description is `text`
  kStop = 5,   // no task left
  kAbort = 6,  // a task failed; `text` is the error every rank raises
};

struct Packet {
  Kind kind = Kind::kReady;
  int64_t index = -1;
  std::string text;
};

// kind (1 byte), index (8 bytes, little-endian), text (the rest).
std::vector<std::byte> encode(Kind kind, int64_t index, std::string_view text) {
  std::vector<std::byte> b(9 + text.size());
  b[0] = static_cast<std::byte>(kind);
  const uint64_t u = static_cast<uint64_t>(index);
  for (int i = 0; i < 8; ++i) b[1 + i] = static_cast<std::byte>((u >> (8 * i)) & 0xFF);
  if (!text.empty()) std::memcpy(b.data() + 9, text.data(), text.size());
  return b;
}

Packet decode(const Communicator::Message& m) {
  if (m.bytes.size() < 9)
    fail("task pool: a message of ", m.bytes.size(), " bytes from rank ", m.source,
         " is too short to be one of the pool's (at least 9)");
  Packet p;
  p.kind = static_cast<Kind>(m.bytes[0]);
  uint64_t u = 0;
  for (int i = 0; i < 8; ++i) u |= static_cast<uint64_t>(m.bytes[1 + i]) << (8 * i);
  p.index = static_cast<int64_t>(u);
  p.text.assign(reinterpret_cast<const char*>(m.bytes.data()) + 9, m.bytes.size() - 9);
  return p;
}

std::string message_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "an exception that is not a std::exception";
  }
}

// What the threads of one rank share while the pool runs.
class Pool {
 public:
  Pool(Communicator& comm, const std::vector<std::string>& tasks, const TaskFn& run,
       const TaskResultFn& on_result)
      : comm_(comm), tasks_(tasks), run_(run), on_result_(on_result) {
    if (comm.rank() == 0) {
      results_.resize(tasks.size());
      delivered_.assign(tasks.size(), false);
      assigned_rank_.assign(tasks.size(), -1);
    }
  }

  // Rank 0's workers: take tasks from the queue in memory.
  void local_worker() {
    for (;;) {
      int64_t i;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (failed_ || next_ >= static_cast<int64_t>(tasks_.size())) return;
        i = next_++;
      }
      std::string out;
      try {
        out = run_(i, tasks_[static_cast<size_t>(i)]);
      } catch (...) {
        record_failure(std::current_exception(), 0);
        return;
      }
      deliver(i, {0, std::move(out)});
    }
  }

  // Rank 0, with other ranks: answers `remote_workers` workers until each
  // has had its stop or abort.
  void coordinate(int remote_workers) {
    try {
      for (int open = remote_workers; open > 0;) {
        const Communicator::Message m = comm_.receive(Communicator::kAnySource, kRequestTag);
        const Packet req = decode(m);
        if (req.kind == Kind::kResult || req.kind == Kind::kFailed)
          check_assigned(req.index, m.source);
        else if (req.kind != Kind::kReady)
          fail("task pool: rank ", m.source, " sent a request of unknown kind ",
               static_cast<int>(req.kind));
        if (req.kind == Kind::kFailed) record_failure(req.text, m.source);
        Packet reply;
        {
          std::lock_guard<std::mutex> lock(mu_);
          if (failed_) {
            reply = {Kind::kAbort, -1, error_};
          } else if (next_ < static_cast<int64_t>(tasks_.size())) {
            reply = {Kind::kTask, next_, tasks_[static_cast<size_t>(next_)]};
            ++next_;
          } else {
            reply = {Kind::kStop, -1, {}};
          }
        }
        // Answer first, so the worker computes while the result is passed on.
        comm_.send(encode(reply.kind, reply.index, reply.text), m.source, kReplyTag);
        if (reply.kind != Kind::kTask) --open;
        if (reply.kind == Kind::kTask) assigned_to(reply.index, m.source);
        if (req.kind == Kind::kResult) deliver(req.index, {m.source, req.text});
      }
    } catch (...) {
      // The job cannot go on (a failed MPI call, a message the pool does not
      // understand): rank 0 raises once its own workers stop, and the other
      // ranks are stopped when that error unwinds past the communicator.
      record_failure(std::current_exception(), -1);
    }
  }

  // A worker on rank r > 0: one round trip to rank 0 per task.
  void remote_worker(std::mutex& mpi) {
    Packet report{Kind::kReady, -1, {}};
    try {
      for (;;) {
        Packet reply;
        {
          std::lock_guard<std::mutex> lock(mpi);
          comm_.send(encode(report.kind, report.index, report.text), 0, kRequestTag);
          reply = decode(comm_.receive(0, kReplyTag));
        }
        if (reply.kind == Kind::kStop) return;
        if (reply.kind == Kind::kAbort) {
          record_failure(reply.text, -1);
          return;
        }
        if (reply.kind != Kind::kTask)
          fail("task pool: rank 0 sent a reply of unknown kind ", static_cast<int>(reply.kind));
        try {
          report = {Kind::kResult, reply.index, run_(reply.index, reply.text)};
        } catch (...) {
          // Reported to rank 0, whose reply is the abort every rank raises.
          report = {Kind::kFailed, reply.index, message_of(std::current_exception())};
        }
      }
    } catch (...) {
      record_failure(std::current_exception(), -1);
    }
  }

  // After the threads have ended: raises the failure, if any.
  void raise_if_failed() {
    if (!failed_) return;
    if (comm_.size() == 1 && local_error_) std::rethrow_exception(local_error_);
    throw Error(error_);
  }

  // An exception on this rank's calling thread (no thread to be had).
  void fail_here(const std::exception_ptr& e) { record_failure(message_of(e), comm_.rank(), e); }

  std::vector<TaskResult>& results() { return results_; }

 private:
  // The first failure is the one every rank raises. `rank`: where it
  // happened; -1 when `what` says so already (rank 0's abort text, an MPI
  // error naming its rank). `e`: its exception, when it happened here.
  void record_failure(const std::string& what, int rank, const std::exception_ptr& e = nullptr) {
    std::lock_guard<std::mutex> lock(mu_);
    if (failed_) return;
    failed_ = true;
    error_ = rank < 0 || comm_.size() == 1 ? what
                                           : what + " (on rank " + std::to_string(rank) + " of " +
                                                 std::to_string(comm_.size()) + ")";
    local_error_ = e;
  }
  void record_failure(const std::exception_ptr& e, int rank) {
    record_failure(message_of(e), rank, e);
  }

  // Rank 0: task `index` was handed to `rank`; its result may come only from there, once.
  void assigned_to(int64_t index, int rank) {
    std::lock_guard<std::mutex> lock(mu_);
    assigned_rank_[static_cast<size_t>(index)] = rank;
  }
  void check_assigned(int64_t index, int rank) {
    std::lock_guard<std::mutex> lock(mu_);
    const bool ok = index >= 0 && index < static_cast<int64_t>(tasks_.size()) &&
                    assigned_rank_[static_cast<size_t>(index)] == rank &&
                    !delivered_[static_cast<size_t>(index)];
    if (!ok)
      fail("task pool: rank ", rank, " reports task ", index,
           ", which was not handed to it or was reported before");
  }

  // Rank 0: stores the result and tells on_result. Once the pool has
  // failed, results still arrive from the tasks that were running: they are
  // kept (their work is done and on disk).
  void deliver(int64_t index, TaskResult r) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      delivered_[static_cast<size_t>(index)] = true;
      results_[static_cast<size_t>(index)] = r;
    }
    if (!on_result_) return;
    std::lock_guard<std::mutex> lock(deliver_mu_);
    try {
      on_result_(index, r);
    } catch (...) {
      record_failure(std::current_exception(), 0);
    }
  }

  Communicator& comm_;
  const std::vector<std::string>& tasks_;
  const TaskFn& run_;
  const TaskResultFn& on_result_;
  std::mutex mu_;  // guards everything below but deliver_mu_
  int64_t next_ = 0;
  bool failed_ = false;
  std::string error_;               // the first failure: what every rank raises
  std::exception_ptr local_error_;  // its exception, when it happened here
  std::vector<TaskResult> results_;
  std::vector<bool> delivered_;
  std::vector<int> assigned_rank_;  // rank 0: who runs each task handed out by message
  std::mutex deliver_mu_;           // on_result: one call at a time
};

}  // namespace

std::vector<TaskResult> run_task_pool(Communicator& comm, const std::vector<std::string>& tasks,
                                      int workers, const TaskFn& run,
                                      const TaskResultFn& on_result) {
  if (workers < 1) fail("task pool: needs at least one worker thread per rank, got ", workers);
  if (!run) fail("task pool: no task function");
  // Rank 0 learns how many workers will ask it for tasks.
  int remote_workers = 0;
  if (comm.size() > 1) {
    std::vector<double> counts(static_cast<size_t>(comm.size()), 0.0);
    counts[static_cast<size_t>(comm.rank())] = workers;
    comm.allreduce_sum(std::span<double>(counts));
    for (size_t r = 1; r < counts.size(); ++r) remote_workers += static_cast<int>(counts[r]);
  }
  Pool pool(comm, tasks, run, on_result);
  std::mutex mpi;  // ranks > 0: one round trip to rank 0 at a time
  std::vector<std::thread> threads;
  int started = 0;
  try {
    for (; started < workers; ++started) {
      if (comm.rank() == 0)
        threads.emplace_back([&pool] { pool.local_worker(); });
      else
        threads.emplace_back([&pool, &mpi] { pool.remote_worker(mpi); });
    }
  } catch (...) {
    // No thread to be had. Rank 0 fails the pool (its workers stop after
    // their task, the other ranks get "abort"); another rank runs the
    // missing workers' loops on this thread, one after another, so that
    // rank 0 still hears from every worker it counts on.
    if (comm.rank() == 0) pool.fail_here(std::current_exception());
    for (; comm.rank() != 0 && started < workers; ++started) pool.remote_worker(mpi);
  }
  if (comm.rank() == 0 && remote_workers > 0) pool.coordinate(remote_workers);
  for (auto& t : threads) t.join();
  pool.raise_if_failed();
  return std::move(pool.results());
}

}  // namespace pare::dist

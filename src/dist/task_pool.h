// The task pool of sweeps (`pare life`, `pare ticket --seeds`): independent
// tasks spread over the ranks of a job and the worker threads of each rank,
// every result gathered on rank 0.
//
// Assignment is dynamic: a worker that is free asks for the next task and
// gets it, so a rank whose tasks finish early takes more, and no rank waits
// at the end for a share decided in advance. Rank 0 alone knows the tasks:
// each is a string (e.g. JSON) that travels with its index to the worker
// that runs it, and the worker's result (a string too) travels back.
//
// Threads. Every rank runs `workers` worker threads. On rank 0 they take
// tasks from the queue in memory, and while the job has other ranks the
// calling thread is the coordinator: the only thread of rank 0 that calls
// the communicator during the pool. It answers the other ranks' requests
// and passes their results on. On the other ranks each worker talks to rank
// 0 itself, one round trip at a time (a mutex per rank serialises the calls,
// as MPI_THREAD_SERIALIZED asks). With a single-process communicator the
// pool is the queue in memory and its threads, and nothing is sent.
//
// Messages (tags 7301 and 7302 of the communicator; no other part of pare
// uses them). A worker on rank r > 0 sends rank 0 a request: "ready" (its
// first), "result i TEXT" (task i is done; asks for the next) or "failed i
// TEXT" (task i raised). Rank 0 answers each with exactly one reply: "task
// i TEXT", "stop" (no task left) or "abort TEXT" (a task failed somewhere;
// TEXT is the error). Rank 0 knows how many workers each rank runs (one
// allreduce as the pool starts) and returns once every remote worker has
// had its stop or abort; by then every result is in.
//
// Failure. If a task raises (on any rank), or rank 0's on_result raises, no
// new task starts anywhere: each worker finishes the task it is running,
// asks, and gets "abort". Then every rank raises pare::Error with the first
// failure's message and the rank it happened on ("... (on rank 1 of 4)").
// With a single-process communicator the task's own exception is rethrown.
// A failed MPI call raises on its rank; the communicator then stops the
// whole job when that rank's exception unwinds past it (mpi_communicator.h).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "pare/dist/communicator.h"

namespace pare::dist {

// One task's result as rank 0 holds it.
struct TaskResult {
  int rank = -1;     // the rank that ran the task
  std::string text;  // what the task returned
};

// Runs task `index` (its text from rank 0's list) on a worker thread of
// this rank and returns its result. May be called from several threads at
// once (up to `workers`); hold a SerialScope in it to keep each task on its
// own thread rather than sharing the process's thread pool.
using TaskFn = std::function<std::string(int64_t index, const std::string& task)>;
// Rank 0: a task's result has arrived. One call at a time, from any of rank
// 0's threads, in the order results arrive (not index order).
using TaskResultFn = std::function<void(int64_t index, const TaskResult& result)>;

// Runs tasks 0 .. tasks.size()-1 over every rank of `comm`, `workers`
// threads per rank. Every rank must call it (it starts with a collective);
// `tasks` and `on_result` are used on rank 0 only. Returns, on rank 0, every
// task's result in index order; on other ranks, an empty vector. Raises as
// described at the top of this file.
// REQUIRES: workers >= 1 on every rank.
std::vector<TaskResult> run_task_pool(Communicator& comm, const std::vector<std::string>& tasks,
                                      int workers, const TaskFn& run,
                                      const TaskResultFn& on_result = {});

}  // namespace pare::dist

// The communicator: how the processes of one pare job talk to each other.
//
// Training and sweeps (issue #9) see only this interface: a rank and a size,
// an in-place sum over all ranks, a broadcast from one rank, a barrier, and
// point-to-point messages (what the task pool of sweeps, task_pool.h, needs).
// LocalCommunicator is the one-process job (size 1; every collective is a
// no-op, and messages to other ranks are errors); MpiCommunicator
// (mpi_communicator.h) runs over Open MPI when pare was built with it.
// make_communicator() picks between them, so a build without MPI, or a run
// without mpirun, behaves exactly as before.
//
// Deterministic sums. allreduce_sum does not use MPI_Allreduce, whose order of
// additions depends on the MPI library's algorithm and may change with the
// message size. Element i of the result is, on every rank,
//
//     acc = 0 (in double); for r = 0, 1, ..., K-1: acc += double(x_r[i]);
//     result[i] = T(acc)
//
// for buffers of type T (float or double), i.e. the sum in rank order,
// accumulated in double and rounded once to T (sum_in_rank_order below). So a
// given K repeats bit for bit from run to run and agrees bit for bit across
// ranks; K = 1, 2 and 4 on the same global data differ only by float rounding
// (the partial sums each rank contributes are different roundings of the same
// exact sum). For floats, accumulating in double also makes the result
// independent of the order in practice: the double sum of K floats is exact,
// and so the float result is the correctly rounded sum, whenever the K
// addends' exponents span fewer than 53 - 24 - ceil(log2 K) binary orders.
//
// Thread safety: one operation at a time per process (calls from different
// threads must not overlap). Every rank must make the same sequence of
// collective calls with the same lengths and roots (the MPI implementation
// checks lengths and raises pare::Error on a mismatch rather than hanging);
// messages (send, receive) involve only their two ranks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace pare::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  // This process's rank in [0, size()), and the number of processes.
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // How many ranks of this job share this machine (this one included): a rank
  // takes its share of the machine's cores, cores / local_size() threads.
  virtual int local_size() const = 0;
  // A short label for logs, e.g. "local" or "mpi rank 1 of 4".
  virtual std::string name() const = 0;

  // Replaces data, on every rank, with the element-wise sum over all ranks,
  // in the fixed order described at the top of this file.
  // REQUIRES: every rank passes the same data.size().
  void allreduce_sum(std::span<float> data) { allreduce_sum_f32(data); }
  void allreduce_sum(std::span<double> data) { allreduce_sum_f64(data); }

  // Copies rank `root`'s data into data on every other rank.
  // REQUIRES: 0 <= root < size(); every rank passes the same data.size().
  void broadcast(std::span<std::byte> data, int root) { broadcast_bytes(data, root); }
  void broadcast(std::span<float> data, int root) {
    broadcast_bytes(std::as_writable_bytes(data), root);
  }

  // Returns once every rank has called it.
  virtual void barrier() = 0;

  // Point-to-point messages. Unlike the collectives above, only the two
  // ranks involved take part. Tags tell kinds of messages apart; they are
  // 0 .. kMaxTag (the least upper bound MPI guarantees).
  static constexpr int kAnySource = -1;
  static constexpr int kMaxTag = 32767;
  struct Message {
    int source = -1;               // the rank that sent it
    std::vector<std::byte> bytes;  // what it sent
  };
  // Sends `bytes` to rank `to` (not this rank) with `tag`; returns once the
  // bytes may be reused (the receiver may not have them yet).
  void send(std::span<const std::byte> bytes, int to, int tag) { send_bytes(bytes, to, tag); }
  // Waits for the next message with `tag` from rank `from`, or from any rank
  // with kAnySource, and returns it. Messages from one sender with one tag
  // arrive in the order they were sent.
  Message receive(int from, int tag) { return receive_bytes(from, tag); }

 protected:
  // One virtual per operation and type, so that a derived class overriding
  // one does not hide the public overloads above.
  virtual void allreduce_sum_f32(std::span<float> data) = 0;
  virtual void allreduce_sum_f64(std::span<double> data) = 0;
  virtual void broadcast_bytes(std::span<std::byte> data, int root) = 0;
  virtual void send_bytes(std::span<const std::byte> bytes, int to, int tag) = 0;
  virtual Message receive_bytes(int from, int tag) = 0;
};

// The single-process job: rank 0 of 1. Sums and broadcasts leave the data as
// it is (the sum over one rank is the value itself, bit for bit).
class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_size() const override { return 1; }
  std::string name() const override { return "local"; }
  void barrier() override {}

 protected:
  void allreduce_sum_f32(std::span<float>) override {}
  void allreduce_sum_f64(std::span<double>) override {}
  // Raises pare::Error when root is not 0.
  void broadcast_bytes(std::span<std::byte> data, int root) override;
  // A single process has no other rank to talk to: both raise pare::Error.
  void send_bytes(std::span<const std::byte> bytes, int to, int tag) override;
  Message receive_bytes(int from, int tag) override;
};

// True when pare was built with MPI (CMake found it; PARE_HAVE_MPI).
bool built_with_mpi();

// True when this process looks like one rank of an MPI launch: MPI is
// already initialised, or the launcher's environment is present
// (OMPI_COMM_WORLD_SIZE from Open MPI's mpirun, PMIX_RANK or PMI_SIZE from
// Slurm's srun and other PMI launchers). Does not initialise MPI.
bool launched_under_mpi();

// The MPI communicator (over a duplicate of MPI_COMM_WORLD) when pare was
// built with MPI and launched under mpirun/srun, else a LocalCommunicator.
// A build without MPI started as several ranks raises Error (each copy would
// run the whole job).
// The first MPI communicator initialises MPI; it is finalised at exit.
std::unique_ptr<Communicator> make_communicator();

// The deterministic sum the communicators use, as a plain function so that
// it can be tested and reused:
//   parts: (k, n) row-major, row r = rank r's buffer; out: (n)
//   out[i] = T(((0.0 + double(parts[0][i])) + double(parts[1][i])) + ... )
// accumulated in double in rank order 0..k-1 and rounded once to T.
// `out` may alias row 0 of parts (the sum is read before it is written).
// REQUIRES: k >= 1, n >= 0.
void sum_in_rank_order(int k, int64_t n, float* out, const float* parts);
void sum_in_rank_order(int k, int64_t n, double* out, const double* parts);

}  // namespace pare::dist

// The communicator over Open MPI (built only when CMake finds MPI; the build
// then defines PARE_HAVE_MPI). mpi.h stays out of this header so that rooms
// using the communicator do not need MPI's include path.
//
// Lifetime: the first MpiCommunicator initialises MPI (MPI_Init_thread,
// MPI_THREAD_SERIALIZED) and registers an exit handler that finalises it, so
// MPI is finalised once, after main returns. (A program that initialised MPI
// itself keeps MPI's lifetime: no handler is registered.) After a failed MPI
// call, or when a communicator is destroyed by an exception unwinding past
// it, the exit handler calls MPI_Abort instead: this rank is leaving early,
// and MPI_Finalize would wait for ranks that are still in a collective and
// never arrive. So a program whose communicator lives inside its try block
// (the catch reports the error and returns non-zero) stops the whole job
// instead of hanging it. A rank that returns normally while others still
// wait in a collective is a bug in the caller and does hang in MPI_Finalize.
//
// Each communicator works on its own duplicate of MPI_COMM_WORLD with the
// MPI_ERRORS_RETURN handler, so its messages never match a user's and a
// failed call raises pare::Error naming the rank and the operation instead
// of aborting inside MPI.
//
// Sums are the rank-ordered sums of communicator.h, done chunk by chunk as a
// reduce-scatter and an allgather: rank j owns slice j of each chunk (of at
// most chunk_elements), receives every rank's slice j (MPI_Alltoallv), sums
// them in rank order (sum_in_rank_order) and every rank gathers the summed
// slices (MPI_Allgatherv). The summing is split across ranks and each rank
// sends and receives about 2 x (size() - 1) / size() of a chunk, where a
// gather to rank 0 and a broadcast put size() chunks through rank 0. Each
// rank holds one chunk's worth of extra elements.
//
// receive() waits by polling (MPI_Iprobe) with sleeps of up to 1 ms, not in
// a blocking MPI_Recv: Open MPI's blocking calls spin on a core, and a rank
// that waits for messages (the sweep's coordinator) must leave its cores to
// the threads that compute beside it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "pare/dist/communicator.h"

namespace pare::dist {

// True once MPI_Init (or MPI_Init_thread) has run in this process.
bool mpi_initialized();

class MpiCommunicator final : public Communicator {
 public:
  // 65,536 elements per chunk: 256 KiB of floats, 2 MiB gathered on rank 0 at
  // K = 8; large enough that the per-chunk latency is small beside the copy.
  static constexpr int64_t kDefaultChunkElements = int64_t{1} << 16;

  // Initialises MPI if needed. Raises pare::Error if MPI was already
  // finalised, if it cannot give MPI_THREAD_SERIALIZED, or if
  // chunk_elements < 1.
  explicit MpiCommunicator(int64_t chunk_elements = kDefaultChunkElements);
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_size() const override { return local_size_; }
  std::string name() const override;
  void barrier() override;

  int64_t chunk_elements() const { return chunk_; }

 protected:
  void allreduce_sum_f32(std::span<float> data) override;
  void allreduce_sum_f64(std::span<double> data) override;
  void broadcast_bytes(std::span<std::byte> data, int root) override;
  void send_bytes(std::span<const std::byte> bytes, int to, int tag) override;
  Message receive_bytes(int from, int tag) override;

 private:
  struct Comm;  // holds the MPI_Comm; defined in the .cc

  template <typename T>
  void allreduce_chunked(std::span<T> data, const char* op);
  // Raises pare::Error unless every rank passed n (one small collective).
  void check_same_length(int64_t n, const char* op);
  // Raises pare::Error naming this rank and `op` when rc is not MPI_SUCCESS.
  void check(int rc, const char* op) const;

  std::unique_ptr<Comm> comm_;
  int rank_ = 0;
  int size_ = 1;
  int local_size_ = 1;
  int64_t chunk_;
  std::vector<std::byte> gathered_;  // this rank's slice from every rank: size() x chunk / size()
  std::vector<int> counts_, displs_, from_each_, row_displs_;  // MPI's per-rank counts and offsets
};

}  // namespace pare::dist

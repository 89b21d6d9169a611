// Open MPI implementation of the communicator (see mpi_communicator.h).
#include "pare/dist/mpi_communicator.h"

#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "pare/base/error.h"

namespace pare::dist {

namespace {

// Set when any MPI call made by pare fails: the exit handler then aborts the
// job rather than finalise (MPI_Finalize would wait for the other ranks).
std::atomic<bool> g_mpi_failed{false};

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (g_mpi_failed.load()) MPI_Abort(MPI_COMM_WORLD, 1);
  MPI_Finalize();
}

std::string error_text(int rc) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(rc);
  return std::string(text, static_cast<size_t>(len));
}

// Initialises MPI once per process (or accepts the program's own
// initialisation) and registers the exit handler.
void ensure_initialized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) fail("MPI communicator: MPI was already finalised in this process");
  int initialized = 0;
  MPI_Initialized(&initialized);
  int provided = 0;
  if (!initialized) {
    const int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
    if (rc != MPI_SUCCESS) fail("MPI_Init_thread failed: ", error_text(rc));
    std::atexit(finalize_at_exit);
  } else {
    MPI_Query_thread(&provided);
  }
  if (provided < MPI_THREAD_SERIALIZED)
    fail("MPI communicator: this MPI provides thread level ", provided,
         ", pare needs MPI_THREAD_SERIALIZED (calls from several threads, one at a time)");
}

template <typename T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<float>() {
  return MPI_FLOAT;
}
template <>
MPI_Datatype mpi_type<double>() {
  return MPI_DOUBLE;
}

}  // namespace

bool mpi_initialized() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  return initialized != 0;
}

struct MpiCommunicator::Comm {
  MPI_Comm comm = MPI_COMM_NULL;
};

MpiCommunicator::MpiCommunicator(int64_t chunk_elements)
    : comm_(std::make_unique<Comm>()), chunk_(chunk_elements) {
  if (chunk_elements < 1 || chunk_elements > INT_MAX / 16)
    fail("MPI communicator: chunk of ", chunk_elements, " elements is out of range");
  ensure_initialized();
  // MPI_COMM_WORLD keeps its handler (a failing MPI_Comm_dup aborts the job
  // with MPI's message); every later error on the duplicate returns to us.
  check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_->comm), "MPI_Comm_dup");
  check(MPI_Comm_set_errhandler(comm_->comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check(MPI_Comm_rank(comm_->comm, &rank_), "MPI_Comm_rank");
  check(MPI_Comm_size(comm_->comm, &size_), "MPI_Comm_size");
  // The ranks that can share memory with this one are the ones on this machine.
  MPI_Comm node = MPI_COMM_NULL;
  check(MPI_Comm_split_type(comm_->comm, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node),
        "MPI_Comm_split_type");
  const int rc = MPI_Comm_size(node, &local_size_);
  MPI_Comm_free(&node);
  check(rc, "MPI_Comm_size (node)");
}

MpiCommunicator::~MpiCommunicator() {
  // Destroyed by an exception unwinding past it: this rank is leaving while
  // the others may be waiting in a collective, so the exit handler must stop
  // the job (MPI_Abort) rather than wait for them in MPI_Finalize.
  if (std::uncaught_exceptions() > 0) g_mpi_failed.store(true);
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_->comm != MPI_COMM_NULL) MPI_Comm_free(&comm_->comm);
}

std::string MpiCommunicator::name() const {
  return "mpi rank " + std::to_string(rank_) + " of " + std::to_string(size_);
}

void MpiCommunicator::check(int rc, const char* op) const {
  if (rc == MPI_SUCCESS) return;
  g_mpi_failed.store(true);
  fail("MPI ", op, " failed on rank ", rank_, " of ", size_, ": ", error_text(rc));
}

void MpiCommunicator::barrier() { check(MPI_Barrier(comm_->comm), "barrier (MPI_Barrier)"); }

void MpiCommunicator::check_same_length(int64_t n, const char* op) {
  // max of (n, -n) over ranks gives the largest and minus the smallest length.
  int64_t v[2] = {n, -n};
  check(MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT64_T, MPI_MAX, comm_->comm), op);
  if (v[0] != -v[1])
    fail(op, ": ranks pass buffers of different lengths (", -v[1], " to ", v[0], " elements; rank ",
         rank_, " passes ", n, "); every rank must pass the same length");
}

template <typename T>
void MpiCommunicator::allreduce_chunked(std::span<T> data, const char* op) {
  const int64_t n = static_cast<int64_t>(data.size());
  check_same_length(n, op);
  if (size_ == 1 || n == 0) return;
  const MPI_Datatype type = mpi_type<T>();
  T* gathered = nullptr;
  if (rank_ == 0) {
    const size_t bytes =
        static_cast<size_t>(size_) * static_cast<size_t>(std::min(n, chunk_)) * sizeof(T);
    if (gathered_.size() < bytes) gathered_.resize(bytes);
    gathered = reinterpret_cast<T*>(gathered_.data());
  }
  for (int64_t begin = 0; begin < n; begin += chunk_) {
    const int count = static_cast<int>(std::min(chunk_, n - begin));
    T* chunk = data.data() + begin;
    // Rank 0 gets row r = rank r's chunk, sums rows in rank order, sends back.
    check(MPI_Gather(chunk, count, type, gathered, count, type, 0, comm_->comm), op);
    if (rank_ == 0) sum_in_rank_order(size_, count, chunk, gathered);
    check(MPI_Bcast(chunk, count, type, 0, comm_->comm), op);
  }
}

void MpiCommunicator::allreduce_sum_f32(std::span<float> data) {
  allreduce_chunked(data, "allreduce_sum (float)");
}
void MpiCommunicator::allreduce_sum_f64(std::span<double> data) {
  allreduce_chunked(data, "allreduce_sum (double)");
}

void MpiCommunicator::broadcast_bytes(std::span<std::byte> data, int root) {
  if (root < 0 || root >= size_)
    fail("broadcast: root rank ", root, " does not exist (", size_, " ranks)");
  const int64_t n = static_cast<int64_t>(data.size());
  check_same_length(n, "broadcast");
  // MPI counts are int: send in pieces of at most 1 GiB.
  constexpr int64_t kPiece = int64_t{1} << 30;
  for (int64_t begin = 0; begin < n; begin += kPiece) {
    const int count = static_cast<int>(std::min(kPiece, n - begin));
    check(MPI_Bcast(data.data() + begin, count, MPI_BYTE, root, comm_->comm),
          "broadcast (MPI_Bcast)");
  }
}

}  // namespace pare::dist

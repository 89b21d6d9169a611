// Open MPI implementation of the communicator (see mpi_communicator.h).
#include "pare/dist/mpi_communicator.h"

#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <exception>
#include <mutex>
#include <thread>

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

// The collective watchdog (mpi_communicator.h). While this process waits in
// a collective, g_waiting_since holds when it entered (steady-clock seconds;
// 0: not waiting) and g_waiting_op what it is.
std::atomic<double> g_waiting_since{0};
std::atomic<const char*> g_waiting_op{""};
std::atomic<int> g_watched_rank{0}, g_watched_size{1};

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// PARE_COLLECTIVE_TIMEOUT in seconds (0: no watchdog); 600 when unset.
double collective_timeout() {
  const char* v = std::getenv("PARE_COLLECTIVE_TIMEOUT");
  if (v == nullptr || *v == '\0') return 600;
  char* end = nullptr;
  const double t = std::strtod(v, &end);
  if (end == v || *end != '\0' || !(t >= 0))
    fail("PARE_COLLECTIVE_TIMEOUT=", v, ": give the seconds a rank may wait in a collective (0: no limit)");
  return t;
}

// Starts, once per process, a thread that ends the process when a
// collective has waited longer than `timeout`: the message names the rank
// and the operation, and the non-zero exit makes mpirun stop every rank.
// It touches no MPI state (MPI calls from it would break
// MPI_THREAD_SERIALIZED); a rank stuck outside MPI is caught by the others.
void start_watchdog(double timeout) {
  static std::once_flag once;
  std::call_once(once, [timeout] {
    std::thread([timeout] {
      const auto tick = std::chrono::duration<double>(std::min(1.0, timeout / 4));
      for (;;) {
        std::this_thread::sleep_for(tick);
        const double since = g_waiting_since.load();
        if (since == 0) continue;
        const double waited = steady_seconds() - since;
        if (waited <= timeout) continue;
        std::fprintf(stderr,
                     "pare: error: rank %d of %d waited %.0f s in %s for the other ranks "
                     "(PARE_COLLECTIVE_TIMEOUT=%g s): another rank is stuck or gone; stopping the job\n",
                     g_watched_rank.load(), g_watched_size.load(), waited, g_waiting_op.load(), timeout);
        std::fflush(stderr);
        std::_Exit(1);
      }
    }).detach();
  });
}

// Marks the scope of one collective for the watchdog.
class WaitingIn {
 public:
  explicit WaitingIn(const char* op) {
    g_waiting_op.store(op);
    g_waiting_since.store(steady_seconds());
  }
  ~WaitingIn() { g_waiting_since.store(0); }
  WaitingIn(const WaitingIn&) = delete;
  WaitingIn& operator=(const WaitingIn&) = delete;
};

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
  g_watched_rank.store(rank_);
  g_watched_size.store(size_);
  if (const double timeout = collective_timeout(); timeout > 0 && size_ > 1) start_watchdog(timeout);
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

void MpiCommunicator::barrier() {
  const WaitingIn waiting("barrier");
  check(MPI_Barrier(comm_->comm), "barrier (MPI_Barrier)");
}

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
  const WaitingIn waiting(op);
  const int64_t n = static_cast<int64_t>(data.size());
  check_same_length(n, op);
  if (size_ == 1 || n == 0) return;
  const MPI_Datatype type = mpi_type<T>();
  const int64_t k = size_;
  counts_.resize(static_cast<size_t>(size_));
  displs_.resize(static_cast<size_t>(size_));
  from_each_.resize(static_cast<size_t>(size_));
  row_displs_.resize(static_cast<size_t>(size_));
  for (int64_t begin = 0; begin < n; begin += chunk_) {
    const int64_t count = std::min(chunk_, n - begin);
    T* chunk = data.data() + begin;
    // Rank j owns slice j of the chunk: it receives every rank's slice j
    // (row r from rank r), sums the rows in rank order, and all gather the
    // summed slices. Each element is summed exactly as sum_in_rank_order
    // says, whichever rank does it.
    for (int64_t j = 0; j < k; ++j) {
      displs_[j] = static_cast<int>(count * j / k);
      counts_[j] = static_cast<int>(count * (j + 1) / k) - displs_[j];
    }
    const int mine = counts_[rank_];
    for (int64_t r = 0; r < k; ++r) {
      from_each_[r] = mine;
      row_displs_[r] = static_cast<int>(r * mine);
    }
    const size_t bytes = static_cast<size_t>(k) * static_cast<size_t>(mine) * sizeof(T);
    if (gathered_.size() < bytes) gathered_.resize(bytes);
    T* rows = reinterpret_cast<T*>(gathered_.data());
    check(MPI_Alltoallv(chunk, counts_.data(), displs_.data(), type, rows, from_each_.data(),
                        row_displs_.data(), type, comm_->comm),
          op);
    sum_in_rank_order(size_, mine, chunk + displs_[rank_], rows);
    check(MPI_Allgatherv(MPI_IN_PLACE, 0, type, chunk, counts_.data(), displs_.data(), type,
                         comm_->comm),
          op);
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
  const WaitingIn waiting("broadcast");
  check_same_length(n, "broadcast");
  // MPI counts are int: send in pieces of at most 1 GiB.
  constexpr int64_t kPiece = int64_t{1} << 30;
  for (int64_t begin = 0; begin < n; begin += kPiece) {
    const int count = static_cast<int>(std::min(kPiece, n - begin));
    check(MPI_Bcast(data.data() + begin, count, MPI_BYTE, root, comm_->comm),
          "broadcast (MPI_Bcast)");
  }
}

// ---- point-to-point messages (communicator.h) ----

namespace {

// Raises pare::Error unless `peer` is another rank (or kAnySource where
// allowed) and `tag` is in range.
void check_peer(const char* op, int peer, bool any_allowed, int tag, int rank, int size) {
  const bool any = any_allowed && peer == Communicator::kAnySource;
  if (!any && (peer < 0 || peer >= size || peer == rank))
    fail(op, ": rank ", peer, " is not another rank of this job (rank ", rank, " of ", size, ")");
  if (tag < 0 || tag > Communicator::kMaxTag)
    fail(op, ": tag ", tag, " is outside 0..", Communicator::kMaxTag);
}

}  // namespace

void MpiCommunicator::send_bytes(std::span<const std::byte> bytes, int to, int tag) {
  check_peer("send", to, false, tag, rank_, size_);
  if (bytes.size() > static_cast<size_t>(INT_MAX))
    fail("send: a message of ", bytes.size(), " bytes to rank ", to, " is over MPI's 2 GiB limit");
  check(MPI_Send(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, to, tag, comm_->comm),
        "send (MPI_Send)");
}

Communicator::Message MpiCommunicator::receive_bytes(int from, int tag) {
  check_peer("receive", from, true, tag, rank_, size_);
  const int source = from == kAnySource ? MPI_ANY_SOURCE : from;
  MPI_Status status;
  int arrived = 0;
  // Sleeps grow from 20 us to 1 ms: a reply that is on its way is taken
  // within microseconds, and a long wait costs a wake-up per millisecond.
  auto nap = std::chrono::microseconds(20);
  for (;;) {
    check(MPI_Iprobe(source, tag, comm_->comm, &arrived, &status), "receive (MPI_Iprobe)");
    if (arrived) break;
    std::this_thread::sleep_for(nap);
    nap = std::min(2 * nap, std::chrono::microseconds(1000));
  }
  int count = 0;
  check(MPI_Get_count(&status, MPI_BYTE, &count), "receive (MPI_Get_count)");
  Message m;
  m.source = status.MPI_SOURCE;
  m.bytes.resize(static_cast<size_t>(count));
  // The probed message itself: same source and tag, and nothing else of
  // this process's receives runs in between (one call at a time).
  check(MPI_Recv(m.bytes.data(), count, MPI_BYTE, status.MPI_SOURCE, tag, comm_->comm,
                 MPI_STATUS_IGNORE),
        "receive (MPI_Recv)");
  return m;
}

}  // namespace pare::dist

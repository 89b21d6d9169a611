// The single-process communicator, the factory and the rank-ordered sum.
#include "pare/dist/communicator.h"

#include <cstdlib>

#include "pare/base/error.h"

#ifdef PARE_HAVE_MPI
#include "pare/dist/mpi_communicator.h"
#endif

namespace pare::dist {

namespace {

template <typename T>
void sum_rows(int k, int64_t n, T* out, const T* parts) {
  PARE_CHECK(k >= 1 && n >= 0, "sum_in_rank_order: k = ", k, ", n = ", n);
  for (int64_t i = 0; i < n; ++i) {
    double acc = 0.0;
    for (int r = 0; r < k; ++r) acc += static_cast<double>(parts[static_cast<int64_t>(r) * n + i]);
    out[i] = static_cast<T>(acc);
  }
}

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0';
}

}  // namespace

void sum_in_rank_order(int k, int64_t n, float* out, const float* parts) {
  sum_rows(k, n, out, parts);
}
void sum_in_rank_order(int k, int64_t n, double* out, const double* parts) {
  sum_rows(k, n, out, parts);
}

void LocalCommunicator::broadcast_bytes(std::span<std::byte>, int root) {
  if (root != 0) fail("broadcast: root rank ", root, " does not exist in a single-process job");
}

void LocalCommunicator::send_bytes(std::span<const std::byte>, int to, int) {
  fail("send: rank ", to, " does not exist in a single-process job (start pare under mpirun to use ranks)");
}

Communicator::Message LocalCommunicator::receive_bytes(int from, int) {
  fail("receive: a single-process job has no other rank to receive from (from rank ", from,
       "); start pare under mpirun to use ranks");
}

bool built_with_mpi() {
#ifdef PARE_HAVE_MPI
  return true;
#else
  return false;
#endif
}

bool launched_under_mpi() {
#ifdef PARE_HAVE_MPI
  if (mpi_initialized()) return true;
#endif
  return env_set("OMPI_COMM_WORLD_SIZE") || env_set("PMIX_RANK") || env_set("PMI_SIZE");
}

std::unique_ptr<Communicator> make_communicator() {
#ifdef PARE_HAVE_MPI
  if (launched_under_mpi()) return std::make_unique<MpiCommunicator>();
#else
  // Without MPI every copy a launcher starts would run the whole job and
  // write the same files: refuse instead.
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    const char* v = std::getenv(var);
    if (v != nullptr && std::atoi(v) > 1)
      fail("this pare was built without MPI, and a launcher started ", v,
           " copies of it (", var, "): rebuild with libopenmpi-dev installed, or run pare without mpirun/srun");
  }
#endif
  return std::make_unique<LocalCommunicator>();
}

}  // namespace pare::dist

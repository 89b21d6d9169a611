// One rank fails while the others wait in a collective: the job must stop
// with the failing rank's message, not hang. Rank 1 raises pare::Error from
// inside the scope that owns its communicator (as a command would on a bad
// file); main catches it, prints it and returns 1. The other ranks are in an
// allreduce that rank 1 never joins. CTest runs this under mpiexec through
// tests/dist/expect_job_stops.sh, which passes only if mpiexec exits
// non-zero before its timeout and rank 1's message was printed.
#include <cstdio>
#include <span>
#include <vector>

#include "pare/base/error.h"
#include "pare/dist/mpi_communicator.h"

int main() {
  try {
    pare::dist::MpiCommunicator comm;
    std::vector<float> v(1000, 1.0f);
    comm.allreduce_sum(std::span<float>(v));  // everyone is up
    if (comm.rank() == 1) pare::fail("rank 1 fails on purpose after ", v[0], " ranks summed");
    comm.allreduce_sum(std::span<float>(v));  // rank 1 never comes
    std::printf("rank %d: second allreduce returned, which it must not\n", comm.rank());
    return 0;
  } catch (const pare::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

// The MPI communicator under mpirun (CTest runs it with -np 2 and -np 4; the
// expected rank count is argv[1]). Not GoogleTest: every rank runs the same
// checks, counts its own failures and prints them with its rank; the total
// over ranks decides every rank's exit code, so all ranks agree and mpirun
// exits non-zero if any check failed anywhere.
//
// Checks: allreduce_sum of float and double buffers of many lengths (empty,
// shorter than, equal to, one off and several times the chunk, 1,000,003
// elements), each element equal bit for bit to the sum computed here in rank
// order 0..K-1 in double; the same allreduce twice gives the same bits; with
// K = 4, reversing the order gives other bits for some doubles (so the check
// above can tell orders apart); broadcast of bytes and floats from a non-zero
// root; barrier waits for the slowest rank; lengths that differ across ranks
// and a root that does not exist raise pare::Error on every rank instead of
// hanging; make_communicator() returns the MPI communicator.
#include <mpi.h>

#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "pare/base/error.h"
#include "pare/dist/communicator.h"
#include "mpi_expect.h"
#include "pare/dist/mpi_communicator.h"

namespace {

using pare::dist::Communicator;
using pare::dist::MpiCommunicator;

using pare::testing::g_failures;
using pare::testing::g_rank;

uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Rank r's element i: signed, with exponents spread over 2^-20..2^20 so that
// sums of doubles round and the order of additions matters.
template <typename T>
T value(int r, int64_t i, uint64_t salt) {
  const uint64_t h =
      mix(mix(static_cast<uint64_t>(r) * 1000003u + salt) ^ static_cast<uint64_t>(i));
  const int e = static_cast<int>((h >> 58) % 41) - 20;
  const double m = static_cast<double>(h >> 11) * 0x1.0p-53 - 0.5;
  return static_cast<T>(std::ldexp(m, e));
}

template <typename T>
std::vector<T> fill(int r, int64_t n, uint64_t salt) {
  std::vector<T> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = value<T>(r, i, salt);
  return v;
}

// The expected result, written out here rather than calling the library:
// ranks 0..k-1 in order (or k-1..0 when reversed), accumulated in double.
template <typename T>
std::vector<T> expected_sum(int k, int64_t n, uint64_t salt, bool reversed) {
  std::vector<double> acc(static_cast<size_t>(n), 0.0);
  for (int j = 0; j < k; ++j) {
    const int r = reversed ? k - 1 - j : j;
    for (int64_t i = 0; i < n; ++i)
      acc[static_cast<size_t>(i)] += static_cast<double>(value<T>(r, i, salt));
  }
  std::vector<T> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    out[static_cast<size_t>(i)] = static_cast<T>(acc[static_cast<size_t>(i)]);
  return out;
}

template <typename T>
int64_t count_bit_mismatches(const std::vector<T>& a, const std::vector<T>& b, int64_t* first) {
  int64_t bad = 0;
  *first = -1;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) {
      if (bad++ == 0) *first = static_cast<int64_t>(i);
    }
  }
  return bad;
}

template <typename T>
void check_allreduce(Communicator& comm, int64_t n, uint64_t salt, const char* what) {
  const int k = comm.size();
  std::vector<T> data = fill<T>(comm.rank(), n, salt);
  comm.allreduce_sum(std::span<T>(data));
  const std::vector<T> want = expected_sum<T>(k, n, salt, false);
  int64_t first = -1;
  const int64_t bad = count_bit_mismatches(data, want, &first);
  EXPECT(bad == 0,
         "%s n=%" PRId64 ": %" PRId64 " elements differ from the rank-order sum, first at %" PRId64
         " (%.17g vs %.17g)",
         what, n, bad, first, bad ? static_cast<double>(data[static_cast<size_t>(first)]) : 0.0,
         bad ? static_cast<double>(want[static_cast<size_t>(first)]) : 0.0);
  // The same data again: the same bits.
  std::vector<T> again = fill<T>(comm.rank(), n, salt);
  comm.allreduce_sum(std::span<T>(again));
  const int64_t diff = count_bit_mismatches(again, data, &first);
  EXPECT(diff == 0,
         "%s n=%" PRId64 ": a second allreduce of the same data differs in %" PRId64 " elements",
         what, n, diff);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    auto made = pare::dist::make_communicator();
    MpiCommunicator comm;  // default chunk
    MpiCommunicator small(1000);
    g_rank = comm.rank();
    const int k = comm.size();
    const int want_k = argc > 1 ? std::atoi(argv[1]) : -1;
    EXPECT(k == want_k, "size() is %d, mpirun started %d ranks", k, want_k);
    EXPECT(made->size() == k && made->rank() == g_rank, "make_communicator: rank %d of %d",
           made->rank(), made->size());
    EXPECT(made->name().rfind("mpi", 0) == 0, "make_communicator's name is '%s'",
           made->name().c_str());
    EXPECT(small.rank() == g_rank && small.size() == k, "second communicator disagrees");
    // The loopback job: every rank is on this machine.
    EXPECT(comm.local_size() == k, "local_size() is %d, all %d ranks are on this machine",
           comm.local_size(), k);

    const int64_t c = MpiCommunicator::kDefaultChunkElements;
    const int64_t sizes[] = {0, 1, 7, c - 1, c, c + 1, 3 * c + 5, 1000003};
    uint64_t salt = 1;
    for (int64_t n : sizes) {
      check_allreduce<float>(comm, n, salt++, "float");
      check_allreduce<double>(comm, n, salt++, "double");
    }
    for (int64_t n : {999, 1000, 1001, 12345}) {
      check_allreduce<float>(small, n, salt++, "float, chunk 1000");
      check_allreduce<double>(small, n, salt++, "double, chunk 1000");
    }

    // The check can tell orders apart: with 4 ranks, summing doubles in the
    // reverse order gives other bits for some elements. (With 2 ranks one
    // addition is commutative, so every order gives the same bits.)
    if (k == 4) {
      const int64_t n = 100000;
      int64_t first = -1;
      const int64_t differ = count_bit_mismatches(expected_sum<double>(k, n, 99, false),
                                                  expected_sum<double>(k, n, 99, true), &first);
      EXPECT(differ > 0, "reversed order gave the same bits for all %" PRId64 " doubles", n);
    }

    // Broadcast from the last rank: bytes and floats.
    const int root = k - 1;
    std::vector<std::byte> bytes(4099, std::byte{static_cast<unsigned char>(g_rank)});
    if (g_rank == root)
      for (size_t i = 0; i < bytes.size(); ++i)
        bytes[i] = std::byte{static_cast<unsigned char>(i * 7 + 3)};
    comm.broadcast(std::span<std::byte>(bytes), root);
    int bad = 0;
    for (size_t i = 0; i < bytes.size(); ++i)
      bad += bytes[i] != std::byte{static_cast<unsigned char>(i * 7 + 3)};
    EXPECT(bad == 0, "broadcast bytes: %d of %zu differ from the root's", bad, bytes.size());
    std::vector<float> floats = fill<float>(g_rank, 1000003, 500);
    comm.broadcast(std::span<float>(floats), root);
    const std::vector<float> root_floats = fill<float>(root, 1000003, 500);
    int64_t first = -1;
    EXPECT(count_bit_mismatches(floats, root_floats, &first) == 0,
           "broadcast floats differ from the root's, first at %" PRId64, first);

    // Barrier: rank r arrives r x 200 ms late; nobody leaves before the last.
    // Rank 0 sleeps not at all, so it waits about 200 x (K - 1) ms in the
    // barrier; the 100 ms margin absorbs the skew with which ranks leave the
    // first barrier on an oversubscribed machine, and a barrier that did not
    // wait would still fail by far.
    comm.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::milliseconds(200 * g_rank));
    comm.barrier();
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT(waited >= 0.2 * (k - 1) - 0.1,
           "left the barrier after %.3f s, the last rank arrives at %.1f s", waited, 0.2 * (k - 1));

    // Misuse raises pare::Error on every rank, and the job goes on.
    bool threw = false;
    std::vector<float> uneven(g_rank == 0 ? 5 : 6, 1.0f);
    try {
      comm.allreduce_sum(std::span<float>(uneven));
    } catch (const pare::Error& e) {
      threw = std::string(e.what()).find("different lengths") != std::string::npos;
    }
    EXPECT(threw, "lengths 5 and 6 across ranks did not raise pare::Error");
    threw = false;
    try {
      comm.broadcast(std::span<float>(floats), k);
    } catch (const pare::Error&) {
      threw = true;
    }
    EXPECT(threw, "broadcast from root %d of %d ranks did not raise", k, k);
    std::vector<float> after(3, static_cast<float>(g_rank));
    comm.allreduce_sum(std::span<float>(after));
    EXPECT(after[2] == static_cast<float>(k * (k - 1) / 2), "allreduce after an error gave %g",
           after[2]);

    // Every rank exits with the same code: the failures summed over ranks.
    std::vector<double> total = {static_cast<double>(g_failures)};
    comm.allreduce_sum(std::span<double>(total));
    if (g_rank == 0)
      std::printf("mpi_allreduce_test: %d ranks, %d failed checks in all\n", k,
                  static_cast<int>(total[0]));
    return total[0] == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: unexpected exception: %s\n", g_rank, e.what());
    MPI_Abort(MPI_COMM_WORLD, 2);
    return 2;
  }
}

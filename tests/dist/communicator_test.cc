// The single-process communicator, the factory outside mpirun, and the
// rank-ordered sum that every communicator's allreduce uses.
#include "pare/dist/communicator.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "pare/base/error.h"

namespace pare::dist {
namespace {

TEST(Communicator, LocalIsRankZeroOfOne) {
  LocalCommunicator c;
  EXPECT_EQ(c.rank(), 0);
  EXPECT_EQ(c.size(), 1);
  EXPECT_EQ(c.local_size(), 1);
  EXPECT_EQ(c.name(), "local");
  c.barrier();
}

TEST(Communicator, LocalAllreduceLeavesBitsUnchanged) {
  LocalCommunicator c;
  std::vector<float> f = {1.5f, -0.0f, 3e-40f /* subnormal */, INFINITY, 1e30f};
  const std::vector<float> f0 = f;
  c.allreduce_sum(f);
  ASSERT_EQ(f.size(), f0.size());
  EXPECT_EQ(std::memcmp(f.data(), f0.data(), f.size() * sizeof(float)), 0);
  std::vector<double> d = {0.1, -0.0, 1e300};
  const std::vector<double> d0 = d;
  c.allreduce_sum(d);
  EXPECT_EQ(std::memcmp(d.data(), d0.data(), d.size() * sizeof(double)), 0);
}

TEST(Communicator, LocalBroadcastFromRootZeroOnly) {
  LocalCommunicator c;
  std::vector<float> f = {1, 2, 3};
  c.broadcast(std::span<float>(f), 0);
  EXPECT_EQ(f, (std::vector<float>{1, 2, 3}));
  std::vector<std::byte> b(4, std::byte{7});
  c.broadcast(std::span<std::byte>(b), 0);
  EXPECT_EQ(b[3], std::byte{7});
  EXPECT_THROW(c.broadcast(std::span<float>(f), 1), Error);
  EXPECT_THROW(c.broadcast(std::span<std::byte>(b), -1), Error);
}

TEST(Communicator, FactoryIsLocalOutsideMpirun) {
  // CTest runs this binary directly; clear what a launcher would set.
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"}) unsetenv(v);
  EXPECT_FALSE(launched_under_mpi());
  auto c = make_communicator();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->size(), 1);
  EXPECT_EQ(c->name(), "local");
#ifdef PARE_HAVE_MPI
  EXPECT_TRUE(built_with_mpi());
#else
  EXPECT_FALSE(built_with_mpi());
#endif
}

TEST(Communicator, SumInRankOrderMatchesHandSums) {
  // k = 3 ranks, n = 4 elements; row r is rank r's buffer.
  const float parts[3 * 4] = {1.0f, 0.5f,   -2.0f, 0.0f,   // rank 0
                              2.0f, 0.25f,  2.0f,  1e-3f,  // rank 1
                              4.0f, 0.125f, 7.0f,  0.0f};  // rank 2
  float out[4];
  sum_in_rank_order(3, 4, out, parts);
  EXPECT_EQ(out[0], 7.0f);
  EXPECT_EQ(out[1], 0.875f);
  EXPECT_EQ(out[2], 7.0f);
  EXPECT_EQ(out[3], 1e-3f);
  // k = 1 is the identity; n = 0 writes nothing.
  float one[2] = {0, 0};
  const float src[2] = {3.25f, -1e-30f};
  sum_in_rank_order(1, 2, one, src);
  EXPECT_EQ(one[0], 3.25f);
  EXPECT_EQ(one[1], -1e-30f);
  sum_in_rank_order(4, 0, one, src);
  EXPECT_EQ(one[0], 3.25f);
  EXPECT_THROW(sum_in_rank_order(0, 2, one, src), Error);
}

TEST(Communicator, FloatSumsAccumulateInDouble) {
  // In float, (1e8 + 1) - 1e8 is 0 (1 is below half an ulp of 1e8, which is 8);
  // accumulated in double and rounded once, the sum is exactly 1.
  const float parts[3] = {1e8f, 1.0f, -1e8f};
  float out = -1;
  sum_in_rank_order(3, 1, &out, parts);
  EXPECT_EQ(out, 1.0f);
  volatile float a = 1e8f, b = 1.0f, c = -1e8f;
  EXPECT_EQ((a + b) + c, 0.0f);  // what a float accumulator would give
}

TEST(Communicator, SumOrderIsRankOrder) {
  // Doubles where the order of additions shows: 2^60 + 1 rounds back to 2^60
  // (an ulp of 2^60 is 256), so rank order 0, 1, 2 gives (2^60 + 1) - 2^60
  // = 0, whereas 2^60 - 2^60 first would give 1. The sum must be 0 however
  // often it runs, and the same values held by the ranks in the order
  // (2^60, -2^60, 1) give 1: the additions follow the ranks.
  const double big = std::ldexp(1.0, 60);
  const double parts[3] = {big, 1.0, -big};
  for (int run = 0; run < 3; ++run) {
    double out = -1;
    sum_in_rank_order(3, 1, &out, parts);
    EXPECT_EQ(out, 0.0);
  }
  const double reordered[3] = {big, -big, 1.0};
  double out = -1;
  sum_in_rank_order(3, 1, &out, reordered);
  EXPECT_EQ(out, 1.0);
  // Floats that span more than a double's 53 bits see the order too.
  const float fparts[3] = {std::ldexp(1.0f, 60), 1.0f, -std::ldexp(1.0f, 60)};
  float fout = -1;
  sum_in_rank_order(3, 1, &fout, fparts);
  EXPECT_EQ(fout, 0.0f);
}

TEST(Communicator, SumOutputMayAliasRowZero) {
  // The MPI communicator sums into rank 0's own chunk: out == parts row 0.
  std::vector<float> parts = {1, 2, 3, 10, 20, 30};  // k = 2, n = 3
  sum_in_rank_order(2, 3, parts.data(), parts.data());
  EXPECT_EQ(parts[0], 11.0f);
  EXPECT_EQ(parts[1], 22.0f);
  EXPECT_EQ(parts[2], 33.0f);
}

}  // namespace
}  // namespace pare::dist

// Checks for the MPI test programs (plain programs under mpiexec, not
// GoogleTest): EXPECT counts a failure and prints it with this process's
// rank; main ends with the failures summed over ranks, so mpiexec fails if
// any rank saw one. Each program sets g_rank once its communicator exists.
#pragma once

#include <cstdio>

namespace pare::testing {
inline int g_rank = -1;
inline int g_failures = 0;
}  // namespace pare::testing

#define EXPECT(cond, ...)                                                                   \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      ++::pare::testing::g_failures;                                                        \
      std::fprintf(stderr, "rank %d: %s:%d: %s: ", ::pare::testing::g_rank, __FILE__, __LINE__, \
                   #cond);                                                                  \
      std::fprintf(stderr, __VA_ARGS__);                                                    \
      std::fprintf(stderr, "\n");                                                           \
    }                                                                                       \
  } while (0)

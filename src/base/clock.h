// Wall and CPU time and the process's memory high-water mark.
#pragma once

#include <cstdint>

namespace pare {

double wall_seconds();         // monotonic clock
double process_cpu_seconds();  // user + system time of all threads
int64_t peak_rss_bytes();      // getrusage ru_maxrss

// Measures elapsed wall time since construction or reset().
class Stopwatch {
 public:
  Stopwatch() : start_(wall_seconds()) {}
  void reset() { start_ = wall_seconds(); }
  double seconds() const { return wall_seconds() - start_; }

 private:
  double start_;
};

}  // namespace pare

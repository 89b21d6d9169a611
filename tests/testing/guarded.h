// Test helper: a float buffer that ends exactly at an inaccessible page, so a
// kernel that reads or writes one element past it crashes the test.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

namespace pare::testing {

// n floats ending exactly at a PROT_NONE page.
class GuardedFloats {
 public:
  explicit GuardedFloats(int64_t n) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t bytes = static_cast<size_t>(n) * sizeof(float);
    body_ = std::max(page, (bytes + page - 1) / page * page);
    size_ = body_ + page;
    void* p = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) std::abort();
    base_ = static_cast<char*>(p);
    if (mprotect(base_ + body_, page, PROT_NONE) != 0) std::abort();
    data_ = reinterpret_cast<float*>(base_ + body_ - bytes);
  }
  ~GuardedFloats() { munmap(base_, size_); }
  GuardedFloats(const GuardedFloats&) = delete;
  GuardedFloats& operator=(const GuardedFloats&) = delete;
  float* data() { return data_; }

 private:
  char* base_ = nullptr;
  size_t body_ = 0, size_ = 0;
  float* data_ = nullptr;
};

}  // namespace pare::testing

#include "pare/base/read_limit.h"

#include <atomic>
#include <cstdlib>

#include "pare/base/error.h"
#include "pare/base/strings.h"

namespace pare {

namespace {

std::atomic<int64_t> g_override{0};

int64_t from_environment() {
  static const int64_t value = [] {
    const char* v = std::getenv("PARE_READ_LIMIT");
    return v && *v ? parse_byte_size(v, "PARE_READ_LIMIT") : kDefaultReadLimitBytes;
  }();
  return value;
}

std::string human(uint64_t bytes) {
  if (bytes >= (uint64_t{1} << 30)) return strf("%.1f GiB", static_cast<double>(bytes) / (1 << 30));
  if (bytes >= (uint64_t{1} << 20)) return strf("%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return strf("%llu bytes", static_cast<unsigned long long>(bytes));
}

}  // namespace

int64_t parse_byte_size(const std::string& text, const std::string& name) {
  auto bad = [&] {
    fail(name, "=", text, ": give a size in bytes, a positive whole number with an optional K, M or G suffix (\"512M\")");
  };
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 15) bad();
  int shift = 0;
  if (digits < text.size()) {
    if (digits + 1 != text.size()) bad();
    switch (text[digits]) {
      case 'K': case 'k': shift = 10; break;
      case 'M': case 'm': shift = 20; break;
      case 'G': case 'g': shift = 30; break;
      default: bad();
    }
  }
  const int64_t n = std::stoll(text.substr(0, digits));
  if (n <= 0 || n > (int64_t{1} << (62 - shift))) bad();
  return n << shift;
}

int64_t read_limit_bytes() {
  const int64_t o = g_override.load(std::memory_order_relaxed);
  return o > 0 ? o : from_environment();
}

void set_read_limit_bytes(int64_t bytes) {
  if (bytes < 0) fail("the reader limit must be positive (0: back to PARE_READ_LIMIT), got ", bytes);
  g_override.store(bytes, std::memory_order_relaxed);
}

void check_read_size(uint64_t bytes, const std::string& source, const std::string& what) {
  const int64_t limit = read_limit_bytes();
  if (bytes <= static_cast<uint64_t>(limit)) return;
  fail(source, ": ", what, " takes ", human(bytes), ", ", over_read_limit(bytes));
}

std::string over_read_limit(uint64_t bytes) {
  return "over the reader limit of " + human(static_cast<uint64_t>(read_limit_bytes())) + " (PARE_READ_LIMIT=" +
         std::to_string((bytes >> 30) + 1) + "G raises it, if the file is one you trust)";
}

}  // namespace pare

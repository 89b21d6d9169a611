// printf into a std::string, for the tables and lines pare prints.
#pragma once

#include <cstdio>
#include <string>

namespace pare {

// The text snprintf(f, args...) writes, of any length. `f` is a literal
// format whose conversions match `args` (the compiler checks them).
template <typename... Args>
std::string strf(const char* f, Args... args) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
#pragma GCC diagnostic ignored "-Wformat-security"
  const int n = std::snprintf(nullptr, 0, f, args...);
  std::string out(n > 0 ? static_cast<size_t>(n) : 0, '\0');
  if (n > 0) std::snprintf(out.data(), out.size() + 1, f, args...);
#pragma GCC diagnostic pop
  return out;
}

}  // namespace pare

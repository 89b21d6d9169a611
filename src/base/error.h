// pare's single error type and the checks that raise it.
//
// Policy (docs/architecture.md): anything a user, a file or the OS can get
// wrong raises pare::Error with a message that says what to fix. Violated
// internal invariants use PARE_CHECK, which raises the same type with the
// source location so the CLI can still print one line and exit non-zero.
// PARE_DCHECK is for hot loops and compiles away in release builds.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace pare {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
// Streams any values into one message string.
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
[[noreturn]] void check_failed(const char* file, int line, const char* cond,
                               const std::string& msg);
}  // namespace detail

// Raises pare::Error built from the streamed arguments.
template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(detail::concat(args...));
}

}  // namespace pare

#define PARE_CHECK(cond, ...)                                              \
  do {                                                                     \
    if (!(cond)) [[unlikely]]                                              \
      ::pare::detail::check_failed(__FILE__, __LINE__, #cond,              \
                                   ::pare::detail::concat("" __VA_OPT__(, ) __VA_ARGS__)); \
  } while (0)

#ifdef NDEBUG
#define PARE_DCHECK(cond) \
  do {                    \
  } while (0)
#else
#define PARE_DCHECK(cond) PARE_CHECK(cond)
#endif

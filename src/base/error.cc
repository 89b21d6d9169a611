// Out-of-line failure path for PARE_CHECK, kept cold.
#include "pare/base/error.h"

namespace pare::detail {

void check_failed(const char* file, int line, const char* cond, const std::string& msg) {
  std::string where = file;
  auto slash = where.rfind("src/");
  if (slash != std::string::npos) where = where.substr(slash + 4);
  throw Error(msg.empty() ? concat(where, ":", line, ": check failed: ", cond)
                          : concat(msg, " (", where, ":", line, ")"));
}

}  // namespace pare::detail

// The libFuzzer entry point of one target: PARE_FUZZ_TARGET names it (one
// binary per target, fuzz/CMakeLists.txt). pare::Error is the expected outcome
// of bad bytes; any other exception, a PARE_CHECK failure, and every
// sanitizer report or crash is a finding (libFuzzer saves the input).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string_view>
#include <typeinfo>

#include "readers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const pare::fuzz::Target& target = pare::fuzz::target(PARE_FUZZ_TARGET);
  try {
    target.feed(std::string_view(reinterpret_cast<const char*>(data), size));
  } catch (const std::exception& e) {
    if (pare::fuzz::is_expected_error(e)) return 0;
    std::fprintf(stderr, "==pare-fuzz== %s: the reader raised %s, not a pare::Error from fail(): %s\n",
                 target.name, typeid(e).name(), e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "==pare-fuzz== %s: the reader raised a non-std exception\n", target.name);
    std::abort();
  }
  return 0;
}

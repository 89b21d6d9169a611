# Compiler flags shared by every pare target.
add_library(pare_flags INTERFACE)
target_compile_options(pare_flags INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>
  $<$<AND:$<CONFIG:Release>,$<NOT:$<BOOL:$<TARGET_PROPERTY:PARE_TEST_CODE>>>>:-O3>)
# Test executables (tests/CMakeLists.txt: PARE_TEST_CODE) compile at -O1: the
# code they test is the rooms' libraries at -O3, and their own assertions and
# setup gain nothing from -O3 but a third more compile time in make test.
if(PARE_NATIVE)
  target_compile_options(pare_flags INTERFACE -march=native)
endif()
# -std=c++20 (no GNU extensions) turns FMA contraction off; allow it for speed.
# Results stay reproducible: one binary always contracts the same way. No
# -ffast-math: reductions keep their written order, so same threads = same bits.
target_compile_options(pare_flags INTERFACE -ffp-contract=fast)
if(PARE_WERROR)
  target_compile_options(pare_flags INTERFACE -Werror)
endif()
# Sanitizers (make test-asan): e.g. -DPARE_SANITIZE=address,undefined. Any
# finding aborts the test that triggered it.
set(PARE_SANITIZE "" CACHE STRING "sanitizers to build with (-fsanitize=...), empty for none")
if(PARE_SANITIZE)
  target_compile_options(pare_flags INTERFACE -fsanitize=${PARE_SANITIZE} -fno-sanitize-recover=all
                         -fno-omit-frame-pointer)
  target_link_options(pare_flags INTERFACE -fsanitize=${PARE_SANITIZE})
endif()
# Fuzzing (make fuzz, fuzz/CMakeLists.txt): every room instrumented for
# libFuzzer's coverage, with the sanitizers of PARE_SANITIZE (make test's
# build-san: address,undefined, where the unit tests run too). -O1 with line
# tables, so that a finding's stack names the reader's line.
if(PARE_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "PARE_FUZZ needs clang (libFuzzer): -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++")
  endif()
  if(NOT PARE_SANITIZE)
    message(FATAL_ERROR "PARE_FUZZ needs a sanitizer to catch what the fuzzer reaches: -DPARE_SANITIZE=address,undefined")
  endif()
  # Test executables (PARE_TEST_CODE) at -O0 without coverage: the rooms
  # they call are instrumented and at -O1; the tests' own code builds in less
  # than half the time, which keeps make test within its budget.
  set(pare_is_test $<BOOL:$<TARGET_PROPERTY:PARE_TEST_CODE>>)
  target_compile_options(pare_flags INTERFACE $<IF:${pare_is_test},-O0,-O1>
                         $<$<NOT:${pare_is_test}>:-fsanitize=fuzzer-no-link> -gline-tables-only)
endif()

// Checks that an action fails with pare::Error, shared by every room's tests.
#pragma once

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <string_view>

#include "pare/base/error.h"

namespace pare::testing {

// Runs `fn`, expecting it to raise pare::Error; returns the message ("" and a
// test failure when nothing was raised).
template <typename Fn>
std::string error_message(Fn fn) {
  try {
    fn();
  } catch (const pare::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected pare::Error";
  return "";
}

// As error_message, and the message must be one line containing every fragment.
template <typename Fn>
std::string expect_error(Fn fn, std::initializer_list<std::string_view> fragments) {
  const std::string msg = error_message(fn);
  EXPECT_EQ(msg.find('\n'), std::string::npos) << "message should be one line: " << msg;
  for (std::string_view f : fragments)
    EXPECT_NE(msg.find(f), std::string::npos) << "message lacks '" << f << "': " << msg;
  return msg;
}

}  // namespace pare::testing

// Little-endian fields and CRC-32 (base/bytes.h).
#include "pare/base/bytes.h"

#include <gtest/gtest.h>

#include <string>

namespace pare {
namespace {

TEST(Crc32, IsTheStandardCheckValueAndContinuesARunningCrc) {
  // The CRC-32 check value of the ASCII digits 1..9 (zlib, PNG, gzip).
  EXPECT_EQ(crc32_of(std::string_view("123456789")), 0xCBF43926u);
  EXPECT_EQ(crc32_of(std::string_view("")), 0u);
  const std::string s = "pare keeps what it was asked to keep";
  for (size_t cut = 0; cut <= s.size(); ++cut) {
    const uint32_t head = crc32_of(s.data(), cut);
    EXPECT_EQ(crc32_of(s.data() + cut, s.size() - cut, head), crc32_of(s)) << "cut at " << cut;
  }
}

TEST(LittleEndian, FieldsAreWrittenLowByteFirstAndReadBack) {
  std::string b;
  append_le<uint32_t>(b, 0x04030201u);
  append_le<uint16_t>(b, 0x0605);
  append_le<float>(b, 1.0f);  // 0x3F800000
  ASSERT_EQ(b.size(), 10u);
  EXPECT_EQ(b.substr(0, 6), std::string("\x01\x02\x03\x04\x05\x06", 6));
  EXPECT_EQ(b.substr(6), std::string("\x00\x00\x80\x3F", 4));
  EXPECT_EQ(load_le<uint32_t>(b, 0), 0x04030201u);
  EXPECT_EQ(load_le<uint16_t>(b, 4), 0x0605);
  EXPECT_EQ(load_le<float>(b, 6), 1.0f);
  EXPECT_EQ(load_le<uint32_t>(b, 1), 0x05040302u) << "any byte offset";
  store_le<uint16_t>(b, 1, 0xBEEF);
  EXPECT_EQ(load_le<uint32_t>(b, 0), 0x04BEEF01u);
  EXPECT_EQ(b.size(), 10u) << "store overwrites in place";
}

}  // namespace
}  // namespace pare

// The reader memory ceiling (base/read_limit.h): parsing PARE_READ_LIMIT's
// sizes, and a gzip bomb refused as it grows past the limit.
#include "pare/base/read_limit.h"

#include <unistd.h>
#include <zlib.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "pare/base/error.h"
#include "pare/base/file.h"
#include "testing/errors.h"

namespace pare {
namespace {

namespace fs = std::filesystem;
using pare::testing::error_message;

// Restores the process's limit after each test.
class ReadLimitTest : public ::testing::Test {
 protected:
  void TearDown() override { set_read_limit_bytes(0); }
};

TEST_F(ReadLimitTest, ParsesSizesWithSuffixes) {
  EXPECT_EQ(parse_byte_size("1", "X"), 1);
  EXPECT_EQ(parse_byte_size("4096", "X"), 4096);
  EXPECT_EQ(parse_byte_size("3K", "X"), 3 << 10);
  EXPECT_EQ(parse_byte_size("512M", "X"), int64_t{512} << 20);
  EXPECT_EQ(parse_byte_size("16g", "X"), int64_t{16} << 30);
}

TEST_F(ReadLimitTest, RefusesWhatIsNotASize) {
  for (const char* bad : {"", "0", "-1", "1.5G", "G", "12T", "1GB", "99999999999999999999", "8589934592G"}) {
    const std::string msg = error_message([&] { parse_byte_size(bad, "PARE_READ_LIMIT"); });
    EXPECT_NE(msg.find(std::string("PARE_READ_LIMIT=") + bad + ": give a size in bytes"), std::string::npos)
        << bad << ": " << msg;
  }
}

TEST_F(ReadLimitTest, DefaultIsFourGibibytesAndOverrideReturns) {
  if (std::getenv("PARE_READ_LIMIT")) GTEST_SKIP() << "PARE_READ_LIMIT is set in this environment";
  EXPECT_EQ(read_limit_bytes(), kDefaultReadLimitBytes);
  set_read_limit_bytes(1000);
  EXPECT_EQ(read_limit_bytes(), 1000);
  set_read_limit_bytes(0);
  EXPECT_EQ(read_limit_bytes(), kDefaultReadLimitBytes);
}

TEST_F(ReadLimitTest, CheckNamesTheSourceTheClaimAndTheLimit) {
  set_read_limit_bytes(int64_t{1} << 20);
  check_read_size(uint64_t{1} << 20, "f.bin", "decoding");  // at the limit: allowed
  const std::string msg = error_message([] { check_read_size((uint64_t{3} << 30), "f.bin", "decoding"); });
  EXPECT_EQ(msg, "f.bin: decoding takes 3.0 GiB, over the reader limit of 1.0 MiB "
                 "(PARE_READ_LIMIT=4G raises it, if the file is one you trust)");
}

TEST_F(ReadLimitTest, AGzipBombStopsAtTheLimit) {
  // 64 MiB of zeros gzip to about 64 KB; with a 1 MiB limit the reader stops
  // once the inflated data passes 1 MiB, having allocated at most about that.
  const fs::path p = fs::temp_directory_path() / ("pare_bomb_" + std::to_string(::getpid()) + ".gz");
  {
    gzFile f = gzopen(p.c_str(), "wb9");
    ASSERT_NE(f, nullptr);
    const std::string zeros(1 << 20, '\0');
    for (int i = 0; i < 64; ++i) ASSERT_EQ(gzwrite(f, zeros.data(), static_cast<unsigned>(zeros.size())), 1 << 20);
    ASSERT_EQ(gzclose(f), Z_OK);
  }
  EXPECT_LT(fs::file_size(p), 1u << 20);
  set_read_limit_bytes(int64_t{1} << 20);
  const std::string msg = error_message([&] { read_file_maybe_gz(p.string()); });
  EXPECT_NE(msg.find(p.string() + ": the gunzipped data takes more than 1048576 bytes"), std::string::npos) << msg;
  EXPECT_NE(msg.find("over the reader limit of 1.0 MiB"), std::string::npos) << msg;
  set_read_limit_bytes(int64_t{128} << 20);
  EXPECT_EQ(read_file_maybe_gz(p.string()).size(), size_t{64} << 20);
  fs::remove(p);
}

}  // namespace
}  // namespace pare

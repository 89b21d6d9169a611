// The file seam: atomic writes, reads, gzip and its failure modes.
#include "pare/base/file.h"

#include <unistd.h>
#include <zlib.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "pare/base/error.h"
#include "testing/errors.h"

namespace pare {
namespace {

namespace fs = std::filesystem;

class FileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("pare_base_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // Writes `data` gzip-compressed with zlib's gzFile API.
  void write_gz(const std::string& p, const std::string& data) {
    gzFile f = gzopen(p.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(gzwrite(f, data.data(), static_cast<unsigned>(data.size())),
              static_cast<int>(data.size()));
    ASSERT_EQ(gzclose(f), Z_OK);
  }

  fs::path dir_;
};

using pare::testing::error_message;

std::string binary_payload(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + i / 7) & 0xff);
  return s;
}

TEST_F(FileTest, AtomicWriteThenReadRoundTrip) {
  const std::string p = path("a.bin");
  const std::string data = binary_payload(100000);
  write_file_atomic(p, data);
  EXPECT_TRUE(file_exists(p));
  EXPECT_EQ(read_file(p), data);
  // Overwrite with shorter content: no stale tail.
  write_file_atomic(p, "short");
  EXPECT_EQ(read_file(p), "short");
  write_file_atomic(p, "");
  EXPECT_EQ(read_file(p), "");
}

TEST_F(FileTest, AtomicWriteLeavesNoTempFile) {
  write_file_atomic(path("x.txt"), "hello");
  write_file_atomic(path("x.txt"), "hello again");
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir_)) names.push_back(entry.path().filename());
  ASSERT_EQ(names.size(), 1u) << "left behind: " << ::testing::PrintToString(names);
  EXPECT_EQ(names[0], "x.txt");
}

TEST_F(FileTest, AtomicWriteIntoMissingDirectoryThrowsNamingPath) {
  const std::string p = path("no/such/dir/f.txt");
  std::string msg = error_message([&] { write_file_atomic(p, "x"); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
}

TEST_F(FileTest, ReadMissingFileThrowsNamingPath) {
  const std::string p = path("missing.bin");
  EXPECT_FALSE(file_exists(p));
  std::string msg = error_message([&] { read_file(p); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  msg = error_message([&] { read_file_maybe_gz(p); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
}

TEST_F(FileTest, ReadDirectoryThrows) {
  std::string msg = error_message([&] { read_file(dir_.string()); });
  EXPECT_NE(msg.find(dir_.string()), std::string::npos) << msg;
}

TEST_F(FileTest, MaybeGzPassesPlainFilesThrough) {
  const std::string p = path("plain.txt");
  write_file_atomic(p, "not compressed");
  EXPECT_EQ(read_file_maybe_gz(p), "not compressed");
  write_file_atomic(p, "\x1f");  // one magic byte only: still plain
  EXPECT_EQ(read_file_maybe_gz(p), "\x1f");
}

TEST_F(FileTest, MaybeGzDecompressesGzip) {
  const std::string p = path("data.gz");
  // Large and compressible enough that the output buffer must grow.
  std::string data;
  for (int i = 0; i < 200000; ++i) data += static_cast<char>('a' + (i % 3));
  data += binary_payload(50000);
  write_gz(p, data);
  const std::string raw = read_file(p);
  ASSERT_GE(raw.size(), 2u);
  EXPECT_EQ(static_cast<unsigned char>(raw[0]), 0x1f);
  EXPECT_EQ(static_cast<unsigned char>(raw[1]), 0x8b);
  EXPECT_LT(raw.size(), data.size());
  EXPECT_EQ(read_file_maybe_gz(p), data);
}

TEST_F(FileTest, MaybeGzEmptyPayload) {
  const std::string p = path("empty.gz");
  write_gz(p, "");
  EXPECT_EQ(read_file_maybe_gz(p), "");
}

TEST_F(FileTest, TruncatedGzipThrows) {
  const std::string p = path("t.gz");
  write_gz(p, binary_payload(20000));
  const std::string raw = read_file(p);
  for (size_t keep : {raw.size() / 2, raw.size() - 4, size_t{12}}) {
    const std::string q = path("cut.gz");
    write_file_atomic(q, std::string_view(raw).substr(0, keep));
    std::string msg = error_message([&] { read_file_maybe_gz(q); });
    EXPECT_NE(msg.find(q), std::string::npos) << msg;
    EXPECT_TRUE(msg.find("truncated") != std::string::npos ||
                msg.find("corrupt") != std::string::npos)
        << "keep=" << keep << ": " << msg;
  }
}

TEST_F(FileTest, CorruptGzipThrows) {
  const std::string p = path("c.gz");
  write_gz(p, binary_payload(20000));
  std::string raw = read_file(p);
  // Flip bytes in the deflate body (after the 10-byte header).
  for (size_t i = 10; i < 30 && i < raw.size(); ++i) raw[i] = static_cast<char>(raw[i] ^ 0x5a);
  write_file_atomic(p, raw);
  std::string msg = error_message([&] { read_file_maybe_gz(p); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_TRUE(msg.find("truncated") != std::string::npos ||
              msg.find("corrupt") != std::string::npos)
      << msg;
}

TEST_F(FileTest, MakeDirsCreatesParents) {
  const std::string p = path("a/b/c");
  make_dirs(p);
  EXPECT_TRUE(fs::is_directory(p));
  make_dirs(p);  // idempotent
  write_file_atomic(p + "/f", "x");
  EXPECT_EQ(read_file(p + "/f"), "x");
}

}  // namespace
}  // namespace pare

// The checkpoint container: round trip and defensive reading.
#include "pare/train/archive.h"

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "train/train_helpers.h"

namespace pare::train {
namespace {

using testing::expect_error;
using testing::TempDirTest;

class ArchiveTest : public TempDirTest {
 protected:
  Archive sample() const {
    Archive a;
    a.meta_json = R"({"kind":"test","step":42,"nested":{"list":[1,2,3]}})";
    std::vector<float> f(24);
    for (size_t i = 0; i < f.size(); ++i) f[i] = 0.25f * static_cast<float>(i) - 3.0f;
    a.tensors.emplace_back("param/w", Tensor::from({2, 3, 4}, f));
    a.tensors.emplace_back("labels", Tensor::from_i32({5}, std::vector<int32_t>{-1, 0, 7, 1 << 30, 3}));
    Tensor u = Tensor::empty({3}, DType::u8);
    u.data<uint8_t>()[0] = 0;
    u.data<uint8_t>()[1] = 200;
    u.data<uint8_t>()[2] = 255;
    a.tensors.emplace_back("mask/u", u);
    a.tensors.emplace_back("empty", Tensor::empty({0, 4}));
    return a;
  }
  // Writes `bytes` to a file and returns its path (plainly, without the
  // fsync of write_file_atomic: hundreds of variants are written per test).
  std::string put(const std::string& name, const std::string& bytes) {
    std::ofstream(path(name), std::ios::binary | std::ios::trunc).write(bytes.data(),
                                                                      static_cast<std::streamsize>(bytes.size()));
    return path(name);
  }
};

TEST_F(ArchiveTest, RoundTripKeepsMetaNamesShapesAndBytes) {
  const Archive a = sample();
  write_archive(path("a.bin"), a);
  const Archive b = read_archive(path("a.bin"));
  EXPECT_EQ(nlohmann::json::parse(b.meta_json), nlohmann::json::parse(a.meta_json));
  ASSERT_EQ(b.tensors.size(), a.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const auto& [na, ta] = a.tensors[i];
    const auto& [nb, tb] = b.tensors[i];
    EXPECT_EQ(na, nb);
    EXPECT_EQ(ta.shape(), tb.shape()) << na;
    EXPECT_EQ(ta.dtype(), tb.dtype()) << na;
    ASSERT_EQ(ta.nbytes(), tb.nbytes()) << na;
    if (ta.nbytes()) {
      EXPECT_EQ(std::memcmp(ta.raw(), tb.raw(), ta.nbytes()), 0) << na;
    }
  }
  ASSERT_NE(b.find("labels"), nullptr);
  EXPECT_EQ(b.find("labels")->data<int32_t>()[3], 1 << 30);
  EXPECT_EQ(b.find("nope"), nullptr);
}

TEST_F(ArchiveTest, EmptyArchiveRoundTrips) {
  write_archive(path("e.bin"), Archive{});
  const Archive b = read_archive(path("e.bin"));
  EXPECT_TRUE(b.tensors.empty());
  EXPECT_EQ(nlohmann::json::parse(b.meta_json), nlohmann::json::object());
}

TEST_F(ArchiveTest, RewritingReplacesTheFileAtomically) {
  write_archive(path("a.bin"), sample());
  Archive small;
  small.meta_json = R"({"v":2})";
  write_archive(path("a.bin"), small);
  EXPECT_EQ(nlohmann::json::parse(read_archive(path("a.bin")).meta_json)["v"], 2);
}

TEST_F(ArchiveTest, FlippingAnyByteIsDetected) {
  write_archive(path("a.bin"), sample());
  const std::string good = read_file(path("a.bin"));
  ASSERT_GT(good.size(), 100u);
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ (i % 2 ? 0x80 : 0x01));
    const std::string p = put("flip.bin", bad);
    SCOPED_TRACE("byte " + std::to_string(i) + " of " + std::to_string(good.size()));
    if (i < 8)
      expect_error([&] { read_archive(p); }, {"flip.bin", "magic"});
    else if (i < 12)
      expect_error([&] { read_archive(p); }, {"flip.bin", "version"});
    else
      expect_error([&] { read_archive(p); }, {"flip.bin", "checksum"});
  }
}

TEST_F(ArchiveTest, TruncationAtAnyLengthIsDetected) {
  write_archive(path("a.bin"), sample());
  const std::string good = read_file(path("a.bin"));
  // Every length inside the prefix and header, then every 3rd, and the last few.
  for (size_t n = 0; n < good.size(); n += (n < 200 || n + 8 > good.size()) ? 1 : 3) {
    const std::string p = put("trunc.bin", good.substr(0, n));
    SCOPED_TRACE("truncated to " + std::to_string(n));
    expect_error([&] { read_archive(p); }, {"trunc.bin"});
  }
}

TEST_F(ArchiveTest, TrailingBytesAreDetected) {
  write_archive(path("a.bin"), sample());
  const std::string p = put("long.bin", read_file(path("a.bin")) + std::string(5, '\0'));
  expect_error([&] { read_archive(p); }, {"long.bin"});
}

TEST_F(ArchiveTest, BadMagicIsNamed) {
  write_archive(path("a.bin"), sample());
  std::string bytes = read_file(path("a.bin"));
  bytes.replace(0, 8, "NOTPARE!");
  expect_error([&] { read_archive(put("magic.bin", bytes)); }, {"magic.bin", "magic"});
  expect_error([&] { read_archive(put("text.bin", "hello, this is not a checkpoint at all")); },
               {"text.bin", "magic"});
  expect_error([&] { read_archive(put("zero.bin", "")); }, {"zero.bin"});
}

TEST_F(ArchiveTest, MissingFileIsNamed) {
  expect_error([&] { read_archive(path("absent.bin")); }, {"absent.bin"});
}

}  // namespace
}  // namespace pare::train

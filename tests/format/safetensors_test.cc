// safetensors: what pare writes reads back, follows the layout (header length,
// JSON, aligned data, offsets covering the data exactly), and damaged files are
// refused naming the tensor.
#include "pare/format/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "testing/errors.h"

namespace pare::format {
namespace {

using json = nlohmann::json;
using testing::expect_error;

std::vector<SafeTensor> sample() {
  SafeTensor w{"fc.weight", "F32", {2, 3}, {}};
  for (int i = 0; i < 6; ++i) {
    const float v = 0.5f * static_cast<float>(i) - 1.0f;
    const auto* b = reinterpret_cast<const uint8_t*>(&v);
    w.bytes.insert(w.bytes.end(), b, b + 4);
  }
  SafeTensor m{"fc.weight.mask", "U8", {2, 3}, {1, 0, 1, 1, 0, 1}};
  SafeTensor s{"scalar", "F32", {}, {0, 0, 128, 63}};  // 1.0f
  return {w, m, s};
}

TEST(Safetensors, RoundTripAndLayout) {
  const std::string bytes = encode_safetensors(sample(), {{"pare_spec", "{}"}, {"format", "pt"}});
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u) << "data 8-byte aligned";
  const json header = json::parse(bytes.substr(8, n));
  EXPECT_EQ(header["fc.weight"]["dtype"], "F32");
  EXPECT_EQ(header["fc.weight"]["shape"], json({2, 3}));
  EXPECT_EQ(header["fc.weight"]["data_offsets"], json({0, 24}));
  EXPECT_EQ(header["fc.weight.mask"]["data_offsets"], json({24, 30}));
  EXPECT_EQ(header["__metadata__"]["format"], "pt");
  EXPECT_EQ(bytes.size(), 8 + n + 34);
  std::map<std::string, std::string> meta;
  const auto back = decode_safetensors(bytes, "m.safetensors", &meta);
  EXPECT_EQ(meta.at("pare_spec"), "{}");
  ASSERT_EQ(back.size(), 3u);
  const auto want = sample();
  for (const SafeTensor& t : want) {
    bool found = false;
    for (const SafeTensor& b : back)
      if (b.name == t.name) {
        found = true;
        EXPECT_EQ(b.dtype, t.dtype);
        EXPECT_EQ(b.shape, t.shape);
        EXPECT_EQ(b.bytes, t.bytes);
      }
    EXPECT_TRUE(found) << t.name;
  }
}

TEST(Safetensors, WriterRefusesBadTensors) {
  auto bad = sample();
  bad[0].bytes.pop_back();
  expect_error([&] { encode_safetensors(bad, {}); }, {"fc.weight", "bytes"});
  bad = sample();
  bad[1].dtype = "I64";
  expect_error([&] { encode_safetensors(bad, {}); }, {"I64"});
  bad = sample();
  bad[2].name = "fc.weight";
  expect_error([&] { encode_safetensors(bad, {}); }, {"repeated"});
}

TEST(Safetensors, DamagedFilesAreRefused) {
  const std::string good = encode_safetensors(sample(), {});
  for (size_t cut = 0; cut < good.size(); ++cut)
    expect_error([&] { decode_safetensors(good.substr(0, cut), "cut.safetensors"); }, {"cut.safetensors"});
  uint64_t n;
  std::memcpy(&n, good.data(), 8);
  auto with_header = [&](json h) {
    std::string text = h.dump();
    const uint64_t len = text.size();
    std::string out(reinterpret_cast<const char*>(&len), 8);
    return out + text + good.substr(8 + n);
  };
  json h = json::parse(good.substr(8, n));
  json over = h;
  over["fc.weight"]["data_offsets"] = {0, 28};
  expect_error([&] { decode_safetensors(with_header(over), "x"); }, {"fc.weight"});
  json gap = h;
  gap.erase("scalar");
  expect_error([&] { decode_safetensors(with_header(gap), "x"); }, {"belong to no tensor"});
  json huge = h;
  huge["fc.weight"]["shape"] = {uint64_t{1} << 30, uint64_t{1} << 30};
  expect_error([&] { decode_safetensors(with_header(huge), "x"); }, {"fc.weight", "too large"});
  json dtype = h;
  dtype["scalar"]["dtype"] = "BF16";
  expect_error([&] { decode_safetensors(with_header(dtype), "x"); }, {"scalar", "BF16"});
  std::string long_header = good;
  const uint64_t lie = uint64_t{1} << 40;
  std::memcpy(long_header.data(), &lie, 8);
  expect_error([&] { decode_safetensors(long_header, "x"); }, {"header length"});
}

}  // namespace
}  // namespace pare::format

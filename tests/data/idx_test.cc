// IDX reader: round trips on hand-written bytes, every corruption rejected
// with a clear message, and the Fashion-MNIST loader.
#include "pare/data/idx.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "data/temp_dir.h"
#include "pare/base/file.h"

namespace pare::data {
namespace {

using testing::expect_error;

// An IDX file: magic, big-endian dims, then `data` as given (already big-endian).
std::string idx_bytes(uint8_t type, std::vector<uint32_t> dims, std::string_view data) {
  std::string s = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) s += static_cast<char>((d >> shift) & 0xFF);
  s.append(data);
  return s;
}

std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

std::string gzip(std::string_view raw) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&zs, raw.size()) + 32, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  zs.avail_in = static_cast<uInt>(raw.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

const std::string kU8Data = {1, 2, 3, 4, 5, static_cast<char>(255)};

class IdxTest : public testing::TempDirTest {};

TEST_F(IdxTest, U8RoundTripPlainAndGzipped) {
  const std::string bytes = idx_bytes(0x08, {2, 3}, kU8Data);
  for (const std::string& path :
       {write("a-idx2-ubyte", bytes), write("a-idx2-ubyte.gz", gzip(bytes))}) {
    SCOPED_TRACE(path);
    Tensor t = read_idx(path);
    ASSERT_EQ(t.dtype(), DType::u8);
    EXPECT_EQ(t.shape(), Shape({2, 3}));
    const uint8_t* p = t.data<uint8_t>();
    EXPECT_EQ(std::vector<uint8_t>(p, p + 6), (std::vector<uint8_t>{1, 2, 3, 4, 5, 255}));
  }
}

TEST(Idx, WiderTypesAreBigEndian) {
  Tensor i32 = parse_idx(idx_bytes(0x0C, {2}, be32(0x01020304) + be32(0xFFFFFFFE)), "i32");
  ASSERT_EQ(i32.dtype(), DType::i32);
  EXPECT_EQ(i32.data<int32_t>()[0], 0x01020304);
  EXPECT_EQ(i32.data<int32_t>()[1], -2);

  uint32_t bits;
  float f = -1.5f;
  std::memcpy(&bits, &f, 4);
  Tensor f32 = parse_idx(idx_bytes(0x0D, {1, 1}, be32(bits)), "f32");
  ASSERT_EQ(f32.dtype(), DType::f32);
  EXPECT_EQ(f32.f32()[0], -1.5f);

  double d = 0.25;
  uint64_t dbits;
  std::memcpy(&dbits, &d, 8);
  Tensor f64 = parse_idx(idx_bytes(0x0E, {1}, be32(dbits >> 32) + be32(dbits & 0xFFFFFFFF)), "f64");
  ASSERT_EQ(f64.dtype(), DType::f32);
  EXPECT_EQ(f64.f32()[0], 0.25f);

  Tensor i16 = parse_idx(idx_bytes(0x0B, {2}, std::string{'\xFF', '\xFE', '\x01', '\x00'}), "i16");
  ASSERT_EQ(i16.dtype(), DType::i32);
  EXPECT_EQ(i16.data<int32_t>()[0], -2);
  EXPECT_EQ(i16.data<int32_t>()[1], 256);

  Tensor i8 = parse_idx(idx_bytes(0x09, {1}, std::string{'\xFF'}), "i8");
  ASSERT_EQ(i8.dtype(), DType::i8);
  EXPECT_EQ(i8.data<int8_t>()[0], -1);

  Tensor empty = parse_idx(idx_bytes(0x08, {0, 28}, ""), "empty");
  EXPECT_EQ(empty.shape(), Shape({0, 28}));
}

TEST(Idx, TruncatedDataNamesBothSizes) {
  expect_error(
      [] {
        parse_idx(idx_bytes(0x08, {2, 3}, kU8Data.substr(0, 4)), "x.idx");
      },
      {"x.idx", "truncated", "2x3", "6 bytes", "has 4"});
}

TEST(Idx, TruncatedHeader) {
  std::string bytes = idx_bytes(0x08, {60000, 28, 28}, "");
  expect_error([&] { parse_idx(bytes.substr(0, 9), "x.idx"); },
               {"x.idx", "truncated", "3 dimensions"});
  expect_error([] { parse_idx(std::string(2, '\0'), "x.idx"); }, {"x.idx", "2 bytes"});
}

TEST(Idx, TrailingBytesRejected) {
  expect_error(
      [] {
        parse_idx(idx_bytes(0x08, {2, 3}, kU8Data + "xy"), "x.idx");
      },
      {"x.idx", "2 unexpected trailing bytes"});
}

TEST(Idx, BadMagicAndType) {
  expect_error(
      [] {
        parse_idx(std::string{1, 2, 8, 1, 0, 0, 0, 0}, "x.idx");
      },
      {"x.idx", "magic", "0x01020801"});
  expect_error([] { parse_idx(idx_bytes(0x07, {1}, "a"), "x.idx"); }, {"x.idx", "0x07", "unknown"});
  expect_error([] { parse_idx(idx_bytes(0x08, {}, ""), "x.idx"); }, {"x.idx", "0 dimensions"});
  expect_error(
      [] {
        parse_idx(idx_bytes(0x08, {1, 1, 1, 1, 1, 1, 1}, "a"), "x.idx");
      },
      {"x.idx", "7 dimensions", "at most 6"});
}

TEST(Idx, HugeDimensionProductRejectedBeforeAllocating) {
  // 2^32-1 to the sixth power overflows 64 bits; a naive product would wrap
  // to a small number and read out of bounds.
  expect_error(
      [] { parse_idx(idx_bytes(0x08, std::vector<uint32_t>(6, 0xFFFFFFFF), "abc"), "x.idx"); },
      {"x.idx", "overflows"});
  // 65536^4 = 2^64 wraps to exactly 0: with no data bytes a wrapped product
  // would "succeed" with a shape whose numel() overflows.
  expect_error(
      [] {
        parse_idx(idx_bytes(0x08, {65536, 65536, 65536, 65536}, ""), "x.idx");
      },
      {"x.idx", "overflows"});
  // (2^32-1)^2 f64 elements fit in 64 bits as a count but not as bytes.
  expect_error(
      [] {
        parse_idx(idx_bytes(0x0E, {0xFFFFFFFF, 0xFFFFFFFF}, "abc"), "x.idx");
      },
      {"x.idx", "overflows"});
  // 64 GiB claimed, 3 bytes present: must fail on length, not on allocation.
  expect_error(
      [] {
        parse_idx(idx_bytes(0x0D, {0x100000, 0x4000}, "abc"), "x.idx");
      },
      {"x.idx", "truncated", "1048576x16384", "has 3"});
}

TEST(Idx, EveryByteFlipIsHandled) {
  const std::string good = idx_bytes(0x0C, {2, 2}, be32(1) + be32(2) + be32(3) + be32(4));
  for (size_t i = 0; i < good.size(); ++i)
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      try {
        Tensor t = parse_idx(bad, "flip");
        EXPECT_EQ(t.nbytes(), 16u) << "byte " << i << " bit " << bit;
      } catch (const pare::Error&) {
      }
    }
}

TEST_F(IdxTest, MissingAndCorruptFilesNamed) {
  expect_error([&] { read_idx(path("nope.gz")); }, {"nope.gz"});
  const std::string gz = gzip(idx_bytes(0x08, {2, 3}, kU8Data));
  expect_error([&] { read_idx(write("cut.gz", gz.substr(0, gz.size() / 2))); }, {"cut.gz"});
}

TEST_F(IdxTest, FashionMnistMissingDirectoryOrFile) {
  expect_error([&] { fashion_mnist(path("absent")); },
               {"absent", "install Debian's dataset-fashion-mnist (make deps)"});
  expect_error([&] { fashion_mnist(dir_.string()); },
               {"train-images-idx3-ubyte.gz", "missing", "dataset-fashion-mnist"});
}

// A three-image stand-in with the real file names exercises the loader
// whether or not the Debian package is installed (uncompressed fallback too).
TEST_F(IdxTest, FashionMnistLoaderOnSmallFiles) {
  std::string pixels(3 * 28 * 28, '\0');
  pixels[0] = static_cast<char>(255);
  pixels[28 * 28 + 1] = static_cast<char>(51);
  write("train-images-idx3-ubyte.gz", gzip(idx_bytes(0x08, {3, 28, 28}, pixels)));
  write("train-labels-idx1-ubyte", idx_bytes(0x08, {3}, std::string{9, 0, 4}));
  write("t10k-images-idx3-ubyte.gz", gzip(idx_bytes(0x08, {1, 28, 28}, pixels.substr(0, 784))));
  write("t10k-labels-idx1-ubyte.gz", gzip(idx_bytes(0x08, {1}, std::string{7})));
  TrainTest tt = fashion_mnist(dir_.string());
  EXPECT_EQ(tt.train.inputs.shape(), Shape({3, 1, 28, 28}));
  EXPECT_EQ(tt.train.inputs.f32()[0], 1.0f);
  EXPECT_FLOAT_EQ(tt.train.inputs.f32()[28 * 28 + 1], 0.2f);
  EXPECT_EQ(tt.train.targets.data<int32_t>()[0], 9);
  EXPECT_EQ(tt.train.targets.data<int32_t>()[2], 4);
  EXPECT_EQ(tt.test.size(), 1);
  EXPECT_EQ(tt.test.num_classes, 10);

  write("t10k-labels-idx1-ubyte.gz", gzip(idx_bytes(0x08, {1}, std::string{10})));
  expect_error([&] { fashion_mnist(dir_.string()); }, {"t10k-labels-idx1-ubyte.gz", "label 10"});
  write("t10k-labels-idx1-ubyte.gz", gzip(idx_bytes(0x08, {2}, std::string{1, 2})));
  expect_error([&] { fashion_mnist(dir_.string()); }, {"2 labels", "1 images"});
}

TEST(FashionMnist, LoadsDebianPackage) {
  if (!file_exists(kFashionMnistDir)) GTEST_SKIP() << kFashionMnistDir << " absent";
  TrainTest tt = fashion_mnist();
  ASSERT_EQ(tt.train.size(), 60000);
  ASSERT_EQ(tt.test.size(), 10000);
  for (const Dataset* d : {&tt.train, &tt.test}) {
    SCOPED_TRACE(d->name);
    EXPECT_EQ(d->inputs.shape(), Shape({d->size(), 1, 28, 28}));
    EXPECT_EQ(d->targets.shape(), Shape({d->size()}));
    ASSERT_EQ(d->targets.dtype(), DType::i32);
    EXPECT_EQ(d->num_classes, 10);
    std::vector<int64_t> per_class(10, 0);
    const int32_t* y = d->targets.data<int32_t>();
    for (int64_t i = 0; i < d->size(); ++i) {
      ASSERT_GE(y[i], 0);
      ASSERT_LT(y[i], 10);
      ++per_class[y[i]];
    }
    // Fashion-MNIST is balanced: 6000 / 1000 of each class.
    for (int64_t c : per_class) EXPECT_EQ(c, d->size() / 10);
    float lo = 1, hi = 0;
    double sum = 0;
    for (float v : d->inputs.span_f32()) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
      sum += v;
    }
    EXPECT_EQ(lo, 0.0f);
    EXPECT_EQ(hi, 1.0f);
    EXPECT_NEAR(sum / d->inputs.numel(), 0.286, 0.01);  // the published mean pixel
  }
  EXPECT_NO_THROW(validate(tt.train));
}

}  // namespace
}  // namespace pare::data

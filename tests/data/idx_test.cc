// IDX reader: round trips on hand-written bytes, every corruption rejected
// with a clear message, and the Fashion-MNIST loader.
#include "pare/data/idx.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "testing/temp_dir.h"
#include "pare/base/file.h"
#include "pare/data/batcher.h"

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
  std::string flipped = gz;
  flipped[gz.size() / 2] = static_cast<char>(flipped[gz.size() / 2] ^ 0x55);
  try {  // a flipped bit in deflate data is usually, not always, detectable
    Tensor t = read_idx(write("flip.gz", flipped));
    EXPECT_EQ(t.nbytes(), 6u);
  } catch (const pare::Error& e) {
    EXPECT_NE(std::string(e.what()).find("flip.gz"), std::string::npos) << e.what();
  }
}

// read_idx streams the file (never holding it whole) through the same checks
// as parse_idx: the errors for a bad length name the same sizes, and values
// wider than a byte are decoded correctly across its internal buffer.
TEST_F(IdxTest, ReadIdxStreamsLargeFilesWithTheSameChecks) {
  constexpr uint32_t n = 100003;  // spans several of read_idx's buffers
  std::string i32_data, f64_data;
  for (uint32_t i = 0; i < n; ++i) {
    i32_data += be32(i * 2654435761u);
    const double d = static_cast<double>(i) * 0.5 - 7;
    uint64_t bits;
    std::memcpy(&bits, &d, 8);
    f64_data += be32(static_cast<uint32_t>(bits >> 32)) + be32(static_cast<uint32_t>(bits));
  }
  for (bool gz : {false, true}) {
    SCOPED_TRACE(gz ? "gzip" : "plain");
    const std::string suffix = gz ? ".gz" : "";
    auto file = [&](const std::string& name, const std::string& bytes) {
      return write(name + suffix, gz ? gzip(bytes) : bytes);
    };
    Tensor a = read_idx(file("i32", idx_bytes(0x0C, {n}, i32_data)));
    ASSERT_EQ(a.dtype(), DType::i32);
    ASSERT_EQ(a.shape(), Shape({n}));
    for (uint32_t i = 0; i < n; ++i)
      ASSERT_EQ(a.data<int32_t>()[i], static_cast<int32_t>(i * 2654435761u)) << i;
    Tensor b =
        read_idx(file("f64", idx_bytes(0x0E, {n / 7, 7}, f64_data.substr(0, n / 7 * 7 * 8))));
    ASSERT_EQ(b.dtype(), DType::f32);
    for (uint32_t i = 0; i < n / 7 * 7; ++i)
      ASSERT_EQ(b.f32()[i], static_cast<float>(static_cast<double>(i) * 0.5 - 7)) << i;
    std::string pixels(300000, '\0');
    for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<char>(i * 7);
    Tensor c = read_idx(file("u8", idx_bytes(0x08, {1000, 300}, pixels)));
    ASSERT_EQ(c.dtype(), DType::u8);
    EXPECT_EQ(std::memcmp(c.raw(), pixels.data(), pixels.size()), 0);

    const std::string u8 = idx_bytes(0x08, {2, 3}, kU8Data);
    expect_error([&] { read_idx(file("short", u8.substr(0, u8.size() - 2))); },
                 {"short", "truncated", "2x3 u8 = 6 bytes", "file has 4"});
    expect_error([&] { read_idx(file("long", u8 + "xy")); },
                 {"long", "2 unexpected trailing bytes"});
    expect_error([&] { read_idx(file("head", u8.substr(0, 9))); },
                 {"head", "truncated", "2 dimensions"});
    expect_error([&] { read_idx(file("tiny", std::string(2, '\0'))); }, {"tiny", "2 bytes"});
    expect_error([&] { read_idx(file("empty", "")); }, {"empty", "0 bytes"});
    // A header claiming far more data than the file holds fails before the
    // tensor is allocated (which would need 2^46 bytes here).
    expect_error(
        [&] {
          read_idx(file("huge", idx_bytes(0x08, {65536, 65536, 16384}, "abc")));
        },
        {"huge", "truncated", "file has 3"});
  }
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
  for (size_t i = 0; i < pixels.size(); ++i)
    pixels[i] = static_cast<char>(i * 37);  // all 256 values
  pixels[0] = static_cast<char>(255);
  pixels[28 * 28 + 1] = static_cast<char>(51);
  write("train-images-idx3-ubyte.gz", gzip(idx_bytes(0x08, {3, 28, 28}, pixels)));
  write("train-labels-idx1-ubyte", idx_bytes(0x08, {3}, std::string{9, 0, 4}));
  write("t10k-images-idx3-ubyte.gz", gzip(idx_bytes(0x08, {1, 28, 28}, pixels.substr(0, 784))));
  write("t10k-labels-idx1-ubyte.gz", gzip(idx_bytes(0x08, {1}, std::string{7})));
  TrainTest tt = fashion_mnist(dir_.string());
  EXPECT_EQ(tt.train.inputs.shape(), Shape({3, 1, 28, 28}));
  // Stored as the file's bytes; scaled only when batches are made.
  ASSERT_EQ(tt.train.inputs.dtype(), DType::u8);
  EXPECT_EQ(std::memcmp(tt.train.inputs.raw(), pixels.data(), pixels.size()), 0);
  EXPECT_EQ(tt.train.input_scale, 1.0 / 255.0);
  EXPECT_EQ(tt.test.input_scale, 1.0 / 255.0);
  EXPECT_EQ(tt.train.targets.data<int32_t>()[0], 9);
  EXPECT_EQ(tt.train.targets.data<int32_t>()[2], 4);
  EXPECT_EQ(tt.test.size(), 1);
  EXPECT_EQ(tt.test.num_classes, 10);
  EXPECT_NO_THROW(validate(tt.train));

  // The batches the model sees hold exactly the old loader's f32 values,
  // float(v) / 255.0f, bit for bit.
  Batcher batches(tt.train, 3, /*shuffle=*/false);
  Rng rng(0);
  batches.start_epoch(rng);
  Tensor x, y;
  ASSERT_TRUE(batches.next(x, y));
  ASSERT_EQ(x.dtype(), DType::f32);
  ASSERT_EQ(x.shape(), Shape({3, 1, 28, 28}));
  for (size_t i = 0; i < pixels.size(); ++i) {
    const float old = static_cast<float>(static_cast<uint8_t>(pixels[i])) / 255.0f;
    ASSERT_EQ(std::memcmp(&x.f32()[i], &old, 4), 0)
        << "pixel " << i << " = " << int{uint8_t(pixels[i])};
  }
  EXPECT_EQ(x.f32()[0], 1.0f);
  EXPECT_FLOAT_EQ(x.f32()[28 * 28 + 1], 0.2f);
  EXPECT_EQ(y.data<int32_t>()[0], 9);

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
    ASSERT_EQ(d->inputs.dtype(), DType::u8);
    EXPECT_EQ(d->input_scale, 1.0 / 255.0);
    const auto* px = static_cast<const uint8_t*>(d->inputs.raw());
    uint8_t lo = 255, hi = 0;
    double sum = 0;
    for (int64_t i = 0; i < d->inputs.numel(); ++i) {
      lo = std::min(lo, px[i]);
      hi = std::max(hi, px[i]);
      sum += px[i];
    }
    EXPECT_EQ(lo, 0);
    EXPECT_EQ(hi, 255);
    EXPECT_NEAR(sum / 255 / d->inputs.numel(), 0.286, 0.01);  // the published mean pixel

    // The first batch (in order) is what the old f32 loader produced, bit for bit.
    Batcher batches(*d, 100, /*shuffle=*/false);
    Rng rng(0);
    batches.start_epoch(rng);
    Tensor x, labels;
    ASSERT_TRUE(batches.next(x, labels));
    ASSERT_EQ(x.dtype(), DType::f32);
    EXPECT_EQ(labels.data<int32_t>()[99], y[99]);
    for (int64_t i = 0; i < x.numel(); ++i) {
      const float old = static_cast<float>(px[i]) / 255.0f;
      ASSERT_EQ(std::memcmp(&x.f32()[i], &old, 4), 0) << i;
    }
  }
  // A quarter of the old f32 storage: 70000 x 784 bytes of pixels plus
  // 70000 i32 labels, about 55 MB (it was about 220 MB).
  size_t bytes = 0;
  for (const Dataset* d : {&tt.train, &tt.test}) bytes += d->inputs.nbytes() + d->targets.nbytes();
  EXPECT_EQ(tt.train.inputs.nbytes(), 60000u * 784);
  EXPECT_EQ(tt.test.inputs.nbytes(), 10000u * 784);
  EXPECT_EQ(bytes, 70000u * 784 + 70000u * 4);
  EXPECT_LT(bytes, 56u * 1000 * 1000);
  EXPECT_NO_THROW(validate(tt.train));
}

}  // namespace
}  // namespace pare::data

// NPY reader and writer: round trips, numpy's own layout, and rejection of
// truncated files, malformed headers and unsupported layouts.
#include "pare/data/npy.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "testing/temp_dir.h"

namespace pare::data {
namespace {

using testing::expect_error;

// An .npy file with the given header dict text and raw data.
std::string npy(std::string_view dict, std::string_view data, int major = 1) {
  std::string s = "\x93NUMPY";
  s += static_cast<char>(major);
  s += '\0';
  std::string header = std::string(dict) + "\n";
  if (major == 1) {
    s += static_cast<char>(header.size() & 0xFF);
    s += static_cast<char>(header.size() >> 8);
  } else {
    for (int i = 0; i < 4; ++i) s += static_cast<char>((header.size() >> (8 * i)) & 0xFF);
  }
  return s + header + std::string(data);
}

template <typename T>
std::string raw(std::vector<T> v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

class NpyTest : public testing::TempDirTest {};

TEST_F(NpyTest, RoundTripF32AndI32) {
  Tensor f = Tensor::from({2, 3}, std::vector<float>{1, -2.5f, 3, 4, 5, 1e-7f});
  Tensor f2 = read_npy(write("f.npy", encode_npy(f)));
  ASSERT_EQ(f2.dtype(), DType::f32);
  EXPECT_EQ(f2.shape(), f.shape());
  EXPECT_EQ(std::memcmp(f2.f32(), f.f32(), f.nbytes()), 0);

  Tensor i = Tensor::from_i32({4}, std::vector<int32_t>{0, -1, 7, 2147483647});
  write_npy(path("i.npy"), i);
  Tensor i2 = read_npy(path("i.npy"));
  ASSERT_EQ(i2.dtype(), DType::i32);
  EXPECT_EQ(i2.shape(), Shape({4}));
  EXPECT_EQ(std::memcmp(i2.data<int32_t>(), i.data<int32_t>(), i.nbytes()), 0);

  Tensor e = read_npy(write("e.npy", encode_npy(Tensor::empty({0, 5}))));
  EXPECT_EQ(e.shape(), Shape({0, 5}));
}

TEST(Npy, WriterMatchesNumpyLayout) {
  const std::string bytes = encode_npy(Tensor::from_i32({3}, std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t header_len = static_cast<uint8_t>(bytes[8]) | (static_cast<uint8_t>(bytes[9]) << 8);
  EXPECT_EQ((10 + header_len) % 64, 0u) << "data must start 64-byte aligned";
  const std::string dict = bytes.substr(10, header_len);
  EXPECT_EQ(dict.find("{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }"), 0u) << dict;
  EXPECT_EQ(dict.back(), '\n');
  EXPECT_EQ(bytes.size(), 10 + header_len + 12);
}

TEST(Npy, ReadsEveryVersionAndDtype) {
  const std::string d = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }";
  for (int v : {1, 2, 3}) {
    Tensor t = parse_npy(npy(d, raw<double>({0.5, -3})), "v" + std::to_string(v));
    ASSERT_EQ(t.dtype(), DType::f32);
    EXPECT_EQ(t.f32()[0], 0.5f);
    EXPECT_EQ(t.f32()[1], -3.0f);
  }
  Tensor i8 = parse_npy(
      npy("{'descr':'<i8','fortran_order':False,'shape':(1,2)}", raw<int64_t>({-5, 1LL << 30})),
      "i8");
  ASSERT_EQ(i8.dtype(), DType::i32);
  EXPECT_EQ(i8.shape(), Shape({1, 2}));
  EXPECT_EQ(i8.data<int32_t>()[0], -5);
  EXPECT_EQ(i8.data<int32_t>()[1], 1 << 30);
  // Key order is free and "shape" may use Python 2 longs.
  Tensor u1 = parse_npy(
      npy("{\"shape\": (3L,), \"fortran_order\": False, \"descr\": \"|u1\"}", "\x01\x02\xff"),
      "u1");
  ASSERT_EQ(u1.dtype(), DType::u8);
  EXPECT_EQ(u1.data<uint8_t>()[2], 255);
  Tensor i1 =
      parse_npy(npy("{'descr': '|i1', 'fortran_order': False, 'shape': (1,), }", "\xff"), "i1");
  EXPECT_EQ(i1.data<int8_t>()[0], -1);
  Tensor b1 = parse_npy(
      npy("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }", std::string("\x00\x01", 2)),
      "b1");
  EXPECT_EQ(b1.data<uint8_t>()[1], 1);
  Tensor scalar = parse_npy(
      npy("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", raw<float>({7})), "scalar");
  EXPECT_EQ(scalar.ndim(), 0);
  EXPECT_EQ(scalar.f32()[0], 7.0f);
}

TEST(Npy, Int64OutOfRangeRejected) {
  expect_error(
      [] {
        parse_npy(npy("{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }",
                      raw<int64_t>({1, 5000000000LL})),
                  "big.npy");
      },
      {"big.npy", "element 1", "5000000000", "i32"});
}

TEST(Npy, TruncatedAndTrailing) {
  const std::string d = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  expect_error(
      [&] {
        parse_npy(npy(d, raw<float>({1, 2, 3})), "t.npy");
      },
      {"t.npy", "truncated", "(2, 3)", "24 bytes", "has 12"});
  expect_error(
      [&] {
        parse_npy(npy(d, raw<float>({1, 2, 3, 4, 5, 6, 7})), "t.npy");
      },
      {"t.npy", "4 unexpected trailing bytes"});
  const std::string good = npy(d, raw<float>({1, 2, 3, 4, 5, 6}));
  expect_error([&] { parse_npy(good.substr(0, 20), "t.npy"); }, {"t.npy", "truncated", "header"});
  expect_error([&] { parse_npy(good.substr(0, 9), "t.npy"); }, {"t.npy", "truncated"});
}

TEST(Npy, BadMagicVersionAndHeader) {
  expect_error([] { parse_npy("PK\x03\x04 not numpy", "m.npy"); }, {"m.npy", "not an NPY file"});
  expect_error([] { parse_npy(npy("{}", "", 4), "v.npy"); }, {"v.npy", "version 4.0"});
  auto bad = [](std::string_view dict, std::initializer_list<std::string_view> frags) {
    expect_error([&] { parse_npy(npy(dict, ""), "h.npy"); }, frags);
  };
  bad("{'descr': '<f4', 'fortran_order': False}", {"h.npy", "'shape' is missing"});
  bad("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}", {"'extra'"});
  bad("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (0,)}", {"twice"});
  bad("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (0,)}", {"True or False"});
  bad("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}", {"non-negative"});
  bad("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", {"too large"});
  bad("{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1)}", {"dimensions"});
  bad("{'descr': '<f4', 'fortran_order': False, 'shape': (0,)} junk", {"after the closing"});
  bad("{'descr': '<f4' 'fortran_order': False, 'shape': (0,)}", {"expected ',' or '}'"});
  bad("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (0,)}", {"structured"});
  bad("{'descr': '<c8', 'fortran_order': False, 'shape': (0,)}", {"'<c8' is not supported"});
  bad("{'descr': '>f4', 'fortran_order': False, 'shape': (0,)}", {"big-endian"});
  bad("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296)}", {"overflows"});
  bad("{'descr': '|u1', 'fortran_order': False, 'shape': (65536, 65536, 65536, 65536)}",
      {"overflows"});  // wraps to exactly 0 bytes
}

TEST(Npy, FortranOrderRejected) {
  expect_error(
      [] {
        parse_npy(npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
                      raw<float>({1, 2, 3, 4})),
                  "f.npy");
      },
      {"f.npy", "fortran_order is True", "C-order"});
}

TEST(Npy, EveryByteFlipIsHandled) {
  const std::string good = encode_npy(Tensor::from({2, 2}, std::vector<float>{1, 2, 3, 4}));
  for (size_t i = 0; i < good.size(); ++i)
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      try {
        parse_npy(bad, "flip");
      } catch (const pare::Error&) {
      }
    }
}

TEST_F(NpyTest, Dataset) {
  write_npy(path("x.npy"), Tensor::from({3, 2}, std::vector<float>{1, 2, 3, 4, 5, 6}));
  write_npy(path("y.npy"), Tensor::from_i32({3}, std::vector<int32_t>{2, 0, 1}));
  Dataset d = npy_dataset(path("x.npy"), path("y.npy"));
  EXPECT_EQ(d.size(), 3);
  EXPECT_EQ(d.num_classes, 3);
  EXPECT_EQ(d.targets.dtype(), DType::i32);
  EXPECT_EQ(d.name, "x");
  EXPECT_NO_THROW(validate(d));

  // u8 inputs become f32 values; f32 targets mean regression.
  write("xu.npy", npy("{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }", "\x01\x02\x03"));
  write_npy(path("yf.npy"), Tensor::from({3, 1}, std::vector<float>{0.5f, 1, 2}));
  d = npy_dataset(path("xu.npy"), path("yf.npy"));
  EXPECT_EQ(d.inputs.dtype(), DType::f32);
  EXPECT_EQ(d.inputs.f32()[2], 3.0f);
  EXPECT_EQ(d.targets.shape(), Shape({3, 1}));
  EXPECT_EQ(d.num_classes, 0);

  write_npy(path("y2.npy"), Tensor::from_i32({2}, std::vector<int32_t>{0, 1}));
  expect_error([&] { npy_dataset(path("x.npy"), path("y2.npy")); }, {"y2.npy", "2 rows", "has 3"});
  write_npy(path("yn.npy"), Tensor::from_i32({3}, std::vector<int32_t>{0, -1, 1}));
  expect_error([&] { npy_dataset(path("x.npy"), path("yn.npy")); },
               {"yn.npy", "label -1", "index 1"});
}

}  // namespace
}  // namespace pare::data

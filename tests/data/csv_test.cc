// CSV reader: well-formed files in several dialects, and every malformed
// input rejected with its line and column.
#include "pare/data/csv.h"

#include <gtest/gtest.h>

#include <vector>

#include "testing/temp_dir.h"

namespace pare::data {
namespace {

using testing::expect_error;

class CsvTest : public testing::TempDirTest {};

std::vector<float> floats(const Tensor& t) { return {t.f32(), t.f32() + t.numel()}; }
std::vector<int32_t> ints(const Tensor& t) {
  return {t.data<int32_t>(), t.data<int32_t>() + t.numel()};
}

TEST_F(CsvTest, HeaderDetectedAndLabelLast) {
  Dataset d = read_csv(write("iris.csv", "a,b,label\n1.5,2,0\n-3,4e-1,2\r\n\n+5, 6 ,1\n"));
  EXPECT_EQ(d.inputs.shape(), Shape({3, 2}));
  EXPECT_EQ(floats(d.inputs), (std::vector<float>{1.5f, 2, -3, 0.4f, 5, 6}));
  EXPECT_EQ(ints(d.targets), (std::vector<int32_t>{0, 2, 1}));
  EXPECT_EQ(d.num_classes, 3);
  EXPECT_EQ(d.name, "iris");
}

TEST_F(CsvTest, ParsesTextInMemoryAsFromAFile) {
  const std::string text = "a,b,label\n1.5,2,0\n-3,4e-1,2\n";
  Dataset d = parse_csv(text, "mem.csv");
  Dataset f = read_csv(write("mem.csv", text));
  EXPECT_EQ(floats(d.inputs), floats(f.inputs));
  EXPECT_EQ(ints(d.targets), ints(f.targets));
  EXPECT_EQ(d.name, "mem");
  expect_error([&] { parse_csv("1,2\n3\n", "mem.csv"); }, {"mem.csv:2", "ragged"});
}

TEST_F(CsvTest, NoHeaderFirstLabelColumnAndOtherDelimiter) {
  CsvOptions opt;
  opt.label_column = 0;
  opt.delimiter = ';';
  Dataset d = read_csv(write("x.csv", "4;0.5;1\n1.0;2;3\n"), opt);
  EXPECT_EQ(floats(d.inputs), (std::vector<float>{0.5f, 1, 2, 3}));
  EXPECT_EQ(ints(d.targets), (std::vector<int32_t>{4, 1}));
  EXPECT_EQ(d.num_classes, 5);

  opt = {};
  opt.delimiter = '\t';
  d = read_csv(write("t.tsv", "1\t2\t0\n"), opt);
  EXPECT_EQ(d.size(), 1);
}

TEST_F(CsvTest, ExplicitHeaderModes) {
  // A numeric first line is data under auto_detect but a header when declared.
  const std::string p = write("n.csv", "0,1,2\n3,4,1\n");
  EXPECT_EQ(read_csv(p).size(), 2);
  EXPECT_EQ(read_csv(p, {.header = CsvHeader::present}).size(), 1);
  // A first line that is not numbers is an error when declared absent.
  expect_error([&] { read_csv(write("h.csv", "x,y,z\n1,2,3\n"), {.header = CsvHeader::absent}); },
               {"h.csv:1:1:", "'x' is not a finite number"});
}

TEST_F(CsvTest, QuotedFields) {
  Dataset d = read_csv(write("q.csv", "\"a,b\",\"c \"\"d\"\"\",label\n\"1\",2,\" 3 \"\n"));
  EXPECT_EQ(floats(d.inputs), (std::vector<float>{1, 2}));
  EXPECT_EQ(ints(d.targets), (std::vector<int32_t>{3}));
  expect_error([&] { read_csv(write("u.csv", "1,\"2,3\n")); }, {"u.csv:1:2:", "unterminated"});
}

TEST_F(CsvTest, RaggedRow) {
  expect_error([&] { read_csv(write("r.csv", "a,b,c\n1,2,0\n1,2\n")); },
               {"r.csv:3:", "ragged", "has 2 columns", "line 1 has 3"});
  expect_error([&] { read_csv(write("r2.csv", "1,2,0\n\n1,2,3,4\n")); },
               {"r2.csv:3:", "has 4 columns", "line 1 has 3"});
}

TEST_F(CsvTest, NonNumericAndNonFinite) {
  expect_error([&] { read_csv(write("n.csv", "a,b,c\n1,2,0\n1,abc,0\n")); },
               {"n.csv:3:2:", "'abc' is not a finite number"});
  expect_error([&] { read_csv(write("n.csv", "a,b,c\n1,nan,0\n")); }, {"n.csv:2:2:", "'nan'"});
  expect_error([&] { read_csv(write("n.csv", "a,b,c\n1,1e999,0\n")); }, {"n.csv:2:2:"});
  expect_error([&] { read_csv(write("n.csv", "a,b,c\n1,,0\n")); }, {"n.csv:2:2:", "empty field"});
  expect_error([&] { read_csv(write("n.csv", "a,b,c\n1,2 3,0\n")); }, {"n.csv:2:2:", "'2 3'"});
}

TEST_F(CsvTest, BadLabels) {
  expect_error([&] { read_csv(write("l.csv", "1,2,0\n1,2,-1\n")); },
               {"l.csv:2:3:", "label '-1' is negative"});
  expect_error([&] { read_csv(write("l.csv", "1,2,0\n1,2,2.5\n")); },
               {"l.csv:2:3:", "'2.5' is not an integer"});
  expect_error([&] { read_csv(write("l.csv", "1,2,0\n1,2,3e9\n")); }, {"l.csv:2:3:", "too large"});
  // Integral values written as floats are fine.
  EXPECT_EQ(read_csv(write("ok.csv", "1,2,3.0\n")).num_classes, 4);
}

TEST_F(CsvTest, EmptyFileHeaderOnlyAndBadOptions) {
  expect_error([&] { read_csv(write("e.csv", "")); }, {"e.csv:1:", "empty"});
  expect_error([&] { read_csv(write("e.csv", "\n  \n")); }, {"e.csv:1:", "empty"});
  expect_error([&] { read_csv(write("h.csv", "a,b,c\n")); },
               {"h.csv:1:", "no data rows", "header on line 1"});
  expect_error([&] { read_csv(write("one.csv", "1\n2\n")); }, {"one.csv:1:", "1 column"});
  expect_error([&] { read_csv(write("c.csv", "1,2\n"), {.label_column = 2}); },
               {"c.csv", "label_column 2", "2 columns"});
  expect_error([&] { read_csv(write("c.csv", "1,2\n"), {.label_column = -3}); },
               {"label_column -3"});
  expect_error([&] { read_csv(path("missing.csv")); }, {"missing.csv"});
}

}  // namespace
}  // namespace pare::data

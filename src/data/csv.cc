// CSV parsing: one pass over the file, every error located by line and column.
#include "pare/data/csv.h"

#include <charconv>
#include <cmath>
#include <filesystem>
#include <vector>

#include "pare/base/error.h"
#include "pare/base/file.h"

namespace pare::data {

namespace {

// A field's text; quoted fields may need unescaping, so they own a copy.
struct Field {
  std::string_view text;
  std::string unquoted;
  bool quoted = false;
  std::string_view value() const { return quoted ? std::string_view(unquoted) : text; }
};

bool is_blank(char c, char delimiter) { return (c == ' ' || c == '\t') && c != delimiter; }

std::string_view trim(std::string_view s, char delimiter) {
  while (!s.empty() && is_blank(s.front(), delimiter)) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back(), delimiter)) s.remove_suffix(1);
  return s;
}

std::string shown(std::string_view s) {
  constexpr size_t kMax = 40;
  std::string out = "'";
  out.append(s.substr(0, kMax));
  out += s.size() > kMax ? "...'" : "'";
  return out;
}

class LineSplitter {
 public:
  LineSplitter(const std::string& path, char delimiter) : path_(path), delimiter_(delimiter) {}

  // Splits one line (without its newline) into fields.
  void split(std::string_view line, int64_t line_no, std::vector<Field>& fields) {
    fields.clear();
    size_t i = 0;
    for (;;) {
      Field f;
      size_t start = i;
      while (i < line.size() && is_blank(line[i], delimiter_)) ++i;
      if (i < line.size() && line[i] == '"') {
        f.quoted = true;
        ++i;
        for (;;) {
          if (i >= line.size())
            fail(path_, ":", line_no, ":", fields.size() + 1, ": unterminated quoted field");
          if (line[i] == '"') {
            if (i + 1 < line.size() && line[i + 1] == '"') {
              f.unquoted += '"';
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          f.unquoted += line[i++];
        }
        while (i < line.size() && is_blank(line[i], delimiter_)) ++i;
        if (i < line.size() && line[i] != delimiter_)
          fail(path_, ":", line_no, ":", fields.size() + 1,
               ": unexpected text after a closing quote");
        f.unquoted = std::string(trim(f.unquoted, delimiter_));
      } else {
        while (i < line.size() && line[i] != delimiter_) ++i;
        f.text = trim(line.substr(start, i - start), delimiter_);
      }
      fields.push_back(std::move(f));
      if (i >= line.size()) return;
      ++i;  // the delimiter
    }
  }

 private:
  const std::string& path_;
  char delimiter_;
};

// Parses a finite number; accepts a leading '+', which from_chars does not.
bool parse_double(std::string_view s, double& v) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size() && std::isfinite(v);
}

void check_options(const std::string& path, const CsvOptions& opt) {
  if (opt.delimiter == '"' || opt.delimiter == '\n' || opt.delimiter == '\r')
    fail(path, ": CsvOptions.delimiter cannot be a quote or a line break");
}

}  // namespace

Dataset read_csv(const std::string& path, const CsvOptions& opt) {
  check_options(path, opt);  // before reading: a wrong option is the first thing to fix
  return parse_csv(read_file_maybe_gz(path), path, opt);
}

Dataset parse_csv(std::string_view text, const std::string& path, const CsvOptions& opt) {
  check_options(path, opt);
  LineSplitter splitter(path, opt.delimiter);

  std::vector<Field> fields;
  std::vector<float> features;
  std::vector<int32_t> labels;
  int64_t columns = -1, label_col = -1, line_no = 0, header_line = 0, first_line = 0;
  int64_t max_label = -1;
  bool first = true;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (trim(line, opt.delimiter).empty()) continue;
    splitter.split(line, line_no, fields);

    if (first) {
      first = false;
      first_line = line_no;
      columns = static_cast<int64_t>(fields.size());
      if (columns < 2)
        fail(path, ":", line_no, ": has ", columns,
             " column; need at least one feature column and a label column (delimiter '",
             opt.delimiter, "')");
      label_col = opt.label_column < 0 ? columns + opt.label_column : opt.label_column;
      if (label_col < 0 || label_col >= columns)
        fail(path, ": label_column ", opt.label_column, " is out of range for ", columns,
             " columns");
      bool header = opt.header == CsvHeader::present;
      if (opt.header == CsvHeader::auto_detect) {
        double v;
        for (const Field& f : fields) header |= !parse_double(f.value(), v);
      }
      if (header) {
        header_line = line_no;
        continue;
      }
    }

    if (static_cast<int64_t>(fields.size()) != columns)
      fail(path, ":", line_no, ": ragged row: has ", fields.size(), " columns, line ", first_line,
           " has ", columns);
    for (int64_t c = 0; c < columns; ++c) {
      std::string_view s = fields[c].value();
      double v;
      if (!parse_double(s, v)) {
        if (s.empty()) fail(path, ":", line_no, ":", c + 1, ": empty field");
        fail(path, ":", line_no, ":", c + 1, ": ", shown(s), " is not a finite number");
      }
      if (c != label_col) {
        features.push_back(static_cast<float>(v));
        continue;
      }
      if (v < 0) fail(path, ":", line_no, ":", c + 1, ": label ", shown(s), " is negative");
      if (v != std::floor(v))
        fail(path, ":", line_no, ":", c + 1, ": label ", shown(s),
             " is not an integer class index");
      if (v >= 2147483647.0)
        fail(path, ":", line_no, ":", c + 1, ": label ", shown(s), " is too large");
      labels.push_back(static_cast<int32_t>(v));
      max_label = std::max<int64_t>(max_label, labels.back());
    }
  }
  if (line_no == 0 || columns < 0) fail(path, ":1: file is empty");
  if (labels.empty())
    fail(path, ":", line_no, ": no data rows after the header on line ", header_line);

  const int64_t n = static_cast<int64_t>(labels.size());
  Dataset d;
  d.inputs = Tensor::from({n, columns - 1}, features);
  d.targets = Tensor::from_i32({n}, labels);
  d.num_classes = max_label + 1;
  d.name = std::filesystem::path(path).stem().string();
  return d;
}

}  // namespace pare::data

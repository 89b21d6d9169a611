// Numeric CSV files as classification datasets: feature columns and one
// integer label column.
//
// Each non-blank line is a row of fields split on the delimiter; fields may be
// double-quoted ("" inside quotes is a quote) and are trimmed of surrounding
// spaces and tabs. Lines end in \n or \r\n; blank lines are skipped. A gzipped
// file (.csv.gz) is read transparently.
#pragma once

#include <string>
#include <string_view>

#include "pare/data/dataset.h"

namespace pare::data {

enum class CsvHeader {
  auto_detect,  // the first line is a header when any of its fields is not a number
  present,      // the first line is a header (its contents are ignored)
  absent,       // every line is data
};

struct CsvOptions {
  // Which column holds the class label; negative counts from the end, so -1 is
  // the last column and 0 the first.
  int label_column = -1;
  // Whether the first line names the columns. auto_detect is convenient but a
  // typo in the first data row makes it look like a header; say so explicitly
  // to be strict.
  CsvHeader header = CsvHeader::auto_detect;
  char delimiter = ',';  // ',' or ';' or '\t' typically
};

// Reads `path` into inputs (N, F) f32 and targets (N,) i32 with num_classes =
// max label + 1; F = columns - 1; the dataset is named after the file.
// Raises Error as "path:line:column: what is wrong" for a ragged row, a field
// that is not a finite number, or a label that is negative, not an integer or
// too large for i32; and "path: ..." for a file with no data rows or a
// label_column out of range.
Dataset read_csv(const std::string& path, const CsvOptions& opt = {});

// The same on text already in memory (not gzipped); `path` labels error
// messages and names the dataset.
Dataset parse_csv(std::string_view text, const std::string& path, const CsvOptions& opt = {});

}  // namespace pare::data

// Writes an input as the fuzz target read it: with its CRC-32s recomputed
// (fuzz/readers.h), so that a finding checked in as a regression input is a
// file pare itself reads past its checksums.
//
//   build-fuzz/fuzz/fuzz_fix_checksums pare_file|archive|checkpoint IN OUT
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

#include "readers.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: fuzz_fix_checksums pare_file|archive|checkpoint IN OUT\n";
    return 2;
  }
  const std::string kind = argv[1];
  std::ifstream in(argv[2], std::ios::binary);
  const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  std::string out;
  if (kind == "pare_file") out = pare::fuzz::fix_pare_checksums(bytes);
  else if (kind == "archive" || kind == "checkpoint") out = pare::fuzz::fix_archive_checksum(bytes);
  else {
    std::cerr << "fuzz_fix_checksums: no checksums to fix in a " << kind << " input\n";
    return 2;
  }
  std::ofstream(argv[3], std::ios::binary) << out;
  return 0;
}

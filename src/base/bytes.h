// Little-endian fields and CRC-32 for the byte formats pare reads and writes
// (the archive of train/archive.h, the .pare file of format/pare_file.h) and
// for the fuzzers that rewrite them.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace pare {

static_assert(std::endian::native == std::endian::little,
              "pare's file formats are little-endian and are read and written with memcpy");

// CRC-32 with zlib's polynomial, over any length (zlib takes 2^32 - 1 bytes
// at most per call); `crc` continues a running one (0: a fresh start).
uint32_t crc32_of(const void* p, size_t n, uint32_t crc = 0);
inline uint32_t crc32_of(std::string_view b) { return crc32_of(b.data(), b.size()); }

// Appends v's bytes.
template <typename T>
void append_le(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

// The T at byte `at`. REQUIRES: at + sizeof(T) <= in.size() (the caller checks).
template <typename T>
T load_le(std::string_view in, size_t at) {
  T v;
  std::memcpy(&v, in.data() + at, sizeof(T));
  return v;
}

// Overwrites the T at byte `at`. REQUIRES: at + sizeof(T) <= out.size().
template <typename T>
void store_le(std::string& out, size_t at, T v) {
  std::memcpy(out.data() + at, &v, sizeof(T));
}

}  // namespace pare

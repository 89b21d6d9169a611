// The filesystem seam: whole-file reads (plain or gzip) and crash-safe writes.
//
// Every file pare writes goes through write_file_atomic: the bytes go to a
// temporary name in the same directory, are flushed with fsync, and the temp
// file is renamed over the target, so a crash leaves either the old complete
// file or the new complete one, never a torn one.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pare {

// Reads a whole file. Raises Error naming the path when it cannot be read.
std::string read_file(const std::string& path);

// Reads a file and gunzips it when it starts with the gzip magic bytes.
// A truncated or corrupt gzip stream raises Error naming the path.
std::string read_file_maybe_gz(const std::string& path);

// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync dir).
void write_file_atomic(const std::string& path, std::string_view bytes);

bool file_exists(const std::string& path);
// Creates the directory and its parents; raises Error on failure.
void make_dirs(const std::string& path);

}  // namespace pare

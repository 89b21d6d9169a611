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

// Writes `bytes` to `path` atomically: to `path`.tmp.<pid> in the same
// directory, fsync, rename over `path`, fsync of the directory. A crash at
// any point leaves the old complete file or the new complete one, and at
// worst a `.tmp.<pid>` file, which nothing reads and the next write of
// `path` removes (once that pid is gone). A failure (a full disk, EFBIG, a
// read-only directory) raises Error naming `path` and the cause, removes
// the temp file and leaves `path` as it was.
//
// Fault injection (tests/faults, docs/reliability.md): with the environment
// variable PARE_FAULT_KILL_IN_WRITE=<n>[:<where>[:<match>]] the process
// SIGKILLs itself inside its n-th call (from 1) whose path contains <match>
// (default: every call), at <where>:
//   partial  after the first half of the bytes reached the temp file (default)
//   synced   the temp file complete and fsynced, not yet renamed
//   rotated  in the replace_keeping_previous that follows this write, after
//            the old file became the previous one, before the new one is in
// Unset (always, outside tests) it costs one getenv per process.
void write_file_atomic(const std::string& path, std::string_view bytes);

// Puts the complete file `next` (written by write_file_atomic) at `path`,
// keeping the file `path` held until now as `prev` (replacing an older
// `prev`): `path` is hard-linked to a temp name renamed over `prev`, then
// `next` is renamed over `path`, then the directory is fsynced (where hard
// links are not supported, `prev` is written as a copy). So at every moment
// `path` is a complete file, the old or the new one, and `prev` a complete
// one before it. Raises Error naming the file on failure.
void replace_keeping_previous(const std::string& next, const std::string& path, const std::string& prev);

// Removes every `<name>.tmp.<pid>` file in `dir` whose pid is no longer
// running: what a killed process left there. For directories pare owns (a
// run directory): write_file_atomic removes such files of its own target only.
void remove_stale_temp_files(const std::string& dir);

bool file_exists(const std::string& path);
// Creates the directory and its parents; raises Error on failure.
void make_dirs(const std::string& path);

}  // namespace pare

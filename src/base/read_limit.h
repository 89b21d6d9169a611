// The reader memory ceiling: the most bytes a reader of outside bytes may
// allocate for one thing a file claims (a decompressed stream, a decoded
// tensor, the parameters of a model a spec describes).
//
// A file's header can claim any size in a few bytes: a 1 KB gzip stream that
// inflates to 100 GB, a sparse tensor of 2^40 entries, a model spec of 2^31
// weights. Every such claim is compared with this ceiling before anything is
// allocated, and refused with a message naming the file, what it claims and
// how to raise the ceiling. PARE_READ_LIMIT (bytes, with an optional K, M or
// G suffix: "512M", "16G") sets it for a process; the default is 4 GiB.
#pragma once

#include <cstdint>
#include <string>

namespace pare {

inline constexpr int64_t kDefaultReadLimitBytes = int64_t{4} << 30;

// The ceiling in bytes: PARE_READ_LIMIT when set (read once per process;
// an unreadable value raises Error saying what is allowed), else the default.
int64_t read_limit_bytes();

// Overrides the ceiling for this process (tests, embedding programs); 0
// returns to PARE_READ_LIMIT or the default.
void set_read_limit_bytes(int64_t bytes);

// Raises Error when `bytes` is over the ceiling: "<source>: <what> takes
// 8.0 GiB, over the reader limit of 4.0 GiB (PARE_READ_LIMIT; ...)".
void check_read_size(uint64_t bytes, const std::string& source, const std::string& what);

// "over the reader limit of 4.0 GiB (PARE_READ_LIMIT=9G raises it, ...)"
// for a reader that needs `bytes`, to end its own message.
std::string over_read_limit(uint64_t bytes);

// "512M" -> 536870912; raises Error naming `name` for anything else than a
// positive whole number with an optional K, M or G suffix.
int64_t parse_byte_size(const std::string& text, const std::string& name);

}  // namespace pare

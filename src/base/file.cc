// POSIX and zlib implementation of the file seam.
#include "pare/base/file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "pare/base/error.h"
#include "pare/base/read_limit.h"

namespace pare {

std::string read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, ": cannot open: ", std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, ": not a regular file");
  }
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < out.size()) {
    ssize_t r = ::read(fd, out.data() + got, out.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      ::close(fd);
      fail(path, ": read failed after ", got, " of ", out.size(), " bytes");
    }
    got += static_cast<size_t>(r);
  }
  ::close(fd);
  return out;
}

std::string read_file_maybe_gz(const std::string& path) {
  std::string raw = read_file(path);
  if (raw.size() < 2 || static_cast<unsigned char>(raw[0]) != 0x1f ||
      static_cast<unsigned char>(raw[1]) != 0x8b)
    return raw;
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 32) != Z_OK) fail(path, ": zlib init failed");
  // inflateEnd on every way out, the reader limit's Error included.
  struct InflateEnd {
    z_stream* zs;
    ~InflateEnd() { inflateEnd(zs); }
  } end_inflate{&zs};
  std::string out;
  out.resize(raw.size() * 4 + 1024);
  zs.next_in = reinterpret_cast<Bytef*>(raw.data());
  zs.avail_in = static_cast<uInt>(raw.size());
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    if (zs.total_out >= out.size()) {
      // A few bytes of gzip can claim gigabytes (a gzip bomb): the stream
      // grows only up to the reader limit.
      if (out.size() >= static_cast<size_t>(read_limit_bytes()))
        fail(path, ": the gunzipped data takes more than ", out.size(), " bytes, ", over_read_limit(out.size() + 1));
      out.resize(std::min<size_t>(out.size() * 2, static_cast<size_t>(read_limit_bytes())));
    }
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + zs.total_out);
    zs.avail_out = static_cast<uInt>(out.size() - zs.total_out);
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) fail(path, ": gzip stream is truncated");
    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
      fail(path, ": corrupt gzip data (", zs.msg ? zs.msg : "unknown error", ")");
    }
  }
  out.resize(zs.total_out);
  return out;
}

namespace {

// PARE_FAULT_KILL_IN_WRITE (file.h): parsed once.
struct FaultHook {
  int64_t n = 0;               // 0: off
  std::string where = "partial";
  std::string match;
  std::atomic<int64_t> seen{0};  // calls whose path contains `match`
  std::atomic<bool> kill_in_rotate{false};
  FaultHook() {
    const char* v = std::getenv("PARE_FAULT_KILL_IN_WRITE");
    if (!v || !*v) return;
    const std::string s = v;
    const size_t a = s.find(':');
    n = std::atoll(s.substr(0, a).c_str());
    if (a == std::string::npos) return;
    const size_t b = s.find(':', a + 1);
    where = s.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
    if (b != std::string::npos) match = s.substr(b + 1);
  }
  // Whether this write is the one to die in.
  bool hits(const std::string& path) {
    if (n <= 0 || path.find(match) == std::string::npos) return false;
    return seen.fetch_add(1) + 1 == n;
  }
};

FaultHook& fault_hook() {
  static FaultHook hook;
  return hook;
}

[[noreturn]] void die_here() {
  ::raise(SIGKILL);
  std::abort();  // not reached
}

void fsync_dir_of(const std::string& path) {
  const std::string dir = std::filesystem::path(path).parent_path().string();
  const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

// Removes the files `<target>.tmp.<pid>` in `dir` (any target when `target`
// is empty) of processes no longer running: what a write leaves when its
// process is killed midway. A pid still running (or that cannot be asked)
// may be writing: its file stays.
void remove_stale_temps_in(const std::filesystem::path& dir, const std::string& target) {
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const size_t at = name.rfind(".tmp.");
    if (at == std::string::npos || at == 0 || (!target.empty() && name.compare(0, at, target) != 0)) continue;
    const std::string digits = name.substr(at + 5);
    if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(digits));
    if (pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
    std::error_code ignored;
    std::filesystem::remove(it->path(), ignored);
  }
}

// The stale temp files of one target file.
void remove_stale_temps(const std::string& path) {
  const std::filesystem::path p(path);
  remove_stale_temps_in(p.has_parent_path() ? p.parent_path() : std::filesystem::path("."), p.filename().string());
}

}  // namespace

void write_file_atomic(const std::string& path, std::string_view bytes) {
  FaultHook& hook = fault_hook();
  const bool die = hook.hits(path);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(path, ": cannot create ", tmp, ": ", std::strerror(errno));
  // With the fault hook at "partial", only the first half goes out before the kill.
  const size_t stop_at = die && hook.where == "partial" ? bytes.size() / 2 : bytes.size();
  size_t put = 0;
  while (put < stop_at) {
    ssize_t w = ::write(fd, bytes.data() + put, stop_at - put);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const int err = w < 0 ? errno : ENOSPC;
      ::close(fd);
      ::unlink(tmp.c_str());
      fail(path, ": write failed after ", put, " of ", bytes.size(), " bytes: ", std::strerror(err));
    }
    put += static_cast<size_t>(w);
  }
  if (die && hook.where == "partial") die_here();
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    fail(path, ": flush (fsync) failed: ", std::strerror(err));
  }
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail(path, ": close failed: ", std::strerror(err));
  }
  if (die && hook.where == "synced") die_here();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail(path, ": rename failed: ", std::strerror(err));
  }
  fsync_dir_of(path);
  remove_stale_temps(path);
  if (die && hook.where == "rotated") hook.kill_in_rotate = true;
}

void replace_keeping_previous(const std::string& next, const std::string& path, const std::string& prev) {
  if (file_exists(path)) {
    const std::string link_tmp = prev + ".tmp." + std::to_string(::getpid());
    ::unlink(link_tmp.c_str());
    if (::link(path.c_str(), link_tmp.c_str()) == 0) {
      const int rc = ::rename(link_tmp.c_str(), prev.c_str());
      const int err = errno;
      // When `prev` already is `path` (a kill between the two renames left
      // them one file), rename does nothing and the link stays: remove it.
      ::unlink(link_tmp.c_str());
      if (rc != 0) fail(prev, ": rename failed: ", std::strerror(err));
    } else {  // no hard links here: a copy, so that `path` is never missing
      write_file_atomic(prev, read_file(path));
    }
  }
  if (fault_hook().kill_in_rotate) die_here();
  if (::rename(next.c_str(), path.c_str()) != 0) fail(path, ": rename of ", next, " failed: ", std::strerror(errno));
  fsync_dir_of(path);
  remove_stale_temps(prev);
}

void remove_stale_temp_files(const std::string& dir) { remove_stale_temps_in(dir, ""); }

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

void make_dirs(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) fail(path, ": cannot create directory: ", ec.message());
}

}  // namespace pare

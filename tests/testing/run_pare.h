// Runs the pare binary as a subprocess, for the end-to-end tests: stdin from
// /dev/null, stdout and stderr captured through files, the exit status kept;
// and the check that a run failed cleanly with one line "pare: error: ...".
//
// The binary is PARE_BIN, which every test target that includes this header
// must define (and build pare first):
//   target_compile_definitions(test_x PRIVATE PARE_BIN="$<TARGET_FILE:pare>")
//   add_dependencies(test_x pare)
#pragma once

#ifndef PARE_BIN
#error "testing/run_pare.h needs PARE_BIN, the path of the pare binary (see the comment at its top)"
#endif

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "testing/temp_dir.h"

extern char** environ;

namespace pare::testing {

// How one run of pare ended and what it printed.
struct PareRun {
  bool exited = false;  // exited normally (no signal such as SIGABRT)
  int code = -1;        // exit code when exited
  int signal = 0;       // terminating signal otherwise
  bool timed_out = false;  // killed by wait_pare's time limit
  std::string out, err;
  std::vector<std::string> err_lines() const {
    std::vector<std::string> lines;
    std::istringstream is(err);
    for (std::string l; std::getline(is, l);) lines.push_back(l);
    return lines;
  }
};

// Starts the program argv[0] (a path, or found on PATH) with its arguments,
// its stdout and stderr to the files `out` and `err` (truncated). With
// own_group it leads a process group of its own, so that a time limit can
// kill what it started too (mpiexec's ranks). Returns its pid, or -1 and a
// test failure.
inline pid_t spawn_program(std::vector<std::string> args, const std::string& out,
                           const std::string& err, bool own_group = false) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  if (own_group) {
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
  }
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, argv[0], &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  EXPECT_EQ(rc, 0) << "cannot start " << args[0] << ": " << std::strerror(rc);
  return rc == 0 ? pid : -1;
}

// Starts PARE_BIN with `args` (see spawn_program).
inline pid_t spawn_pare(const std::vector<std::string>& args, const std::string& out,
                        const std::string& err) {
  std::vector<std::string> all = {PARE_BIN};
  all.insert(all.end(), args.begin(), args.end());
  return spawn_program(std::move(all), out, err);
}

// Waits for `pid` (from spawn_pare or spawn_program) to end and reads what it
// wrote to `out` and `err`. With a limit in seconds, a process still running
// then is killed (its whole group, when it leads one) and timed_out set.
inline PareRun wait_pare(pid_t pid, const std::string& out, const std::string& err,
                         double limit_seconds = 0) {
  const auto slurp = [](const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  };
  PareRun r;
  int status = 0;
  if (pid <= 0) {
    ADD_FAILURE() << "no process to wait for";
    return r;
  }
  if (limit_seconds > 0) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(limit_seconds);
    while (waitpid(pid, &status, WNOHANG) != pid) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill(getpgid(pid) == pid ? -pid : pid, SIGKILL);
        waitpid(pid, &status, 0);
        r.timed_out = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  } else if (waitpid(pid, &status, 0) != pid) {
    ADD_FAILURE() << "waitpid failed for pid " << pid;
    return r;
  }
  r.exited = !r.timed_out && WIFEXITED(status);
  r.code = r.exited ? WEXITSTATUS(status) : -1;
  r.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

// Expects a clean failure: a normal exit with code 1 (main's handler for
// pare::Error, the one place that prints "pare: error: "), exactly one line on
// stderr, ended by a newline, that starts "pare: error: " and names the
// problem (every fragment), and no abort or trace.
inline void expect_one_line_error(const PareRun& r, std::initializer_list<std::string> fragments) {
  EXPECT_TRUE(r.exited) << "killed by signal " << r.signal << "; stderr: " << r.err;
  EXPECT_EQ(r.code, 1) << r.err;
  const auto lines = r.err_lines();
  ASSERT_EQ(lines.size(), 1u) << "stderr: " << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "stderr: " << r.err;
  EXPECT_EQ(lines[0].rfind("pare: error: ", 0), 0u) << lines[0];
  for (const std::string& f : fragments)
    EXPECT_NE(lines[0].find(f), std::string::npos) << "stderr lacks '" << f << "': " << lines[0];
  EXPECT_EQ(r.err.find("terminate called"), std::string::npos);
  EXPECT_EQ(r.err.find("internal error"), std::string::npos);
}

// A scratch directory per test (TempDirTest) and pare runs in it: the run
// tagged `tag` writes its stdout and stderr to <tag>.out and <tag>.err there.
class PareBinaryTest : public TempDirTest {
 protected:
  pid_t spawn(const std::vector<std::string>& args, const std::string& tag) {
    return spawn_pare(args, path(tag + ".out"), path(tag + ".err"));
  }
  PareRun wait(pid_t pid, const std::string& tag) {
    return wait_pare(pid, path(tag + ".out"), path(tag + ".err"));
  }
  // Runs pare with `args` to the end.
  PareRun run(const std::vector<std::string>& args) {
    const std::string tag = "run" + std::to_string(++runs_);
    return wait(spawn(args, tag), tag);
  }

  int runs_ = 0;
};

}  // namespace pare::testing

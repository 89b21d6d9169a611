// Terminal progress bar with rate and ETA, redrawn at most 10 times a second.
#include "pare/cli/progress.h"

#include <unistd.h>

#include <cstdio>

#include "pare/base/clock.h"

namespace pare::cli {

Progress::Progress(bool enabled) : enabled_(enabled), tty_(isatty(STDERR_FILENO) == 1) {}

void Progress::update(int64_t done, int64_t total, const std::string& label,
                      const std::string& suffix) {
  if (!enabled_ || !tty_) return;
  const double now = wall_seconds();
  if (label != last_label_) {
    if (!last_label_.empty()) std::fputc('\n', stderr);
    last_label_ = label;
    start_ = now;
    last_draw_ = 0;
  }
  if (done < total && now - last_draw_ < 0.1) return;
  last_draw_ = now;
  const int width = 30;
  const double frac = total > 0 ? static_cast<double>(done) / static_cast<double>(total) : 1.0;
  const int filled = static_cast<int>(frac * width);
  char bar[width + 1];
  for (int i = 0; i < width; ++i) bar[i] = i < filled ? '#' : '.';
  bar[width] = '\0';
  const double elapsed = now - start_;
  const double eta = frac > 0 ? elapsed * (1.0 - frac) / frac : 0.0;
  std::fprintf(stderr, "\r%s [%s] %3d%% %lld/%lld  %.1fs, ETA %.1fs  %s\033[K", label.c_str(), bar,
               static_cast<int>(frac * 100), static_cast<long long>(done),
               static_cast<long long>(total), elapsed, eta, suffix.c_str());
  std::fflush(stderr);
}

void Progress::finish() {
  if (!enabled_ || !tty_ || last_label_.empty()) return;
  std::fputc('\n', stderr);
  last_label_.clear();
}

}  // namespace pare::cli

// Progress display: a bar with ETA on a terminal, plain lines otherwise.
#pragma once

#include <cstdint>
#include <string>

namespace pare::cli {

class Progress {
 public:
  // `enabled` false prints nothing; bars are drawn only when stderr is a tty.
  explicit Progress(bool enabled);
  // Work done out of total, with a short label ("epoch 3/10") and a suffix ("loss 0.41").
  void update(int64_t done, int64_t total, const std::string& label, const std::string& suffix);
  // Ends the current bar line.
  void finish();
  bool on_terminal() const { return tty_; }

 private:
  bool enabled_;
  bool tty_;
  double start_ = 0;
  double last_draw_ = 0;
  std::string last_label_;
};

}  // namespace pare::cli

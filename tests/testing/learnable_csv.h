// A small learnable data set for end-to-end tests: a CSV with a header
// "x,y,label", x and y uniform in (-1, 1) from `seed`, label = x + y > 0.
#pragma once

#include <random>
#include <sstream>
#include <string>

namespace pare::testing {

inline std::string learnable_csv(int rows, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  std::ostringstream os;
  os << "x,y,label\n";
  for (int i = 0; i < rows; ++i) {
    const float x = u(gen), y = u(gen);
    os << x << "," << y << "," << (x + y > 0 ? 1 : 0) << "\n";
  }
  return os.str();
}

}  // namespace pare::testing

// Learning-rate schedules at specific steps.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "pare/optim/optimizer.h"

namespace pare::optim {
namespace {

std::string validate_error(const ScheduleConfig& s) {
  try {
    validate(s);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Schedule, Constant) {
  ScheduleConfig s;
  for (int64_t step : {0, 1, 100, 100000}) EXPECT_FLOAT_EQ(scheduled_lr(s, 0.1f, step), 0.1f);
}

TEST(Schedule, WarmupIsLinearThenBase) {
  ScheduleConfig s{.name = "constant", .warmup_steps = 10};
  EXPECT_FLOAT_EQ(scheduled_lr(s, 1.0f, 0), 0.1f);
  EXPECT_FLOAT_EQ(scheduled_lr(s, 1.0f, 4), 0.5f);
  EXPECT_FLOAT_EQ(scheduled_lr(s, 1.0f, 9), 1.0f);
  EXPECT_FLOAT_EQ(scheduled_lr(s, 1.0f, 10), 1.0f);
  EXPECT_FLOAT_EQ(scheduled_lr(s, 1.0f, 500), 1.0f);
  // Monotone during warm-up.
  for (int64_t t = 1; t < 10; ++t) EXPECT_GT(scheduled_lr(s, 1.0f, t), scheduled_lr(s, 1.0f, t - 1));
}

TEST(Schedule, StepDecay) {
  ScheduleConfig s{.name = "step", .step_size = 3, .gamma = 0.1f};
  EXPECT_FLOAT_EQ(scheduled_lr(s, 1.0f, 0), 1.0f);
  EXPECT_FLOAT_EQ(scheduled_lr(s, 1.0f, 2), 1.0f);
  EXPECT_FLOAT_EQ(scheduled_lr(s, 1.0f, 3), 0.1f);
  EXPECT_FLOAT_EQ(scheduled_lr(s, 1.0f, 5), 0.1f);
  EXPECT_FLOAT_EQ(scheduled_lr(s, 1.0f, 6), 0.01f);
  EXPECT_FLOAT_EQ(scheduled_lr(s, 2.0f, 9), 0.002f);
  // After a warm-up the step count restarts.
  ScheduleConfig w{.name = "step", .warmup_steps = 2, .step_size = 3, .gamma = 0.5f};
  EXPECT_FLOAT_EQ(scheduled_lr(w, 1.0f, 0), 0.5f);
  EXPECT_FLOAT_EQ(scheduled_lr(w, 1.0f, 1), 1.0f);
  EXPECT_FLOAT_EQ(scheduled_lr(w, 1.0f, 2), 1.0f);
  EXPECT_FLOAT_EQ(scheduled_lr(w, 1.0f, 4), 1.0f);
  EXPECT_FLOAT_EQ(scheduled_lr(w, 1.0f, 5), 0.5f);
  EXPECT_FLOAT_EQ(scheduled_lr(w, 1.0f, 8), 0.25f);
}

TEST(Schedule, Cosine) {
  ScheduleConfig s{.name = "cosine", .total_steps = 100, .lr_min = 0.01f};
  EXPECT_FLOAT_EQ(scheduled_lr(s, 1.0f, 0), 1.0f);
  EXPECT_NEAR(scheduled_lr(s, 1.0f, 25), 0.01 + 0.99 * 0.5 * (1 + std::cos(M_PI * 0.25)), 1e-6);
  EXPECT_NEAR(scheduled_lr(s, 1.0f, 50), 0.505, 1e-6);
  EXPECT_NEAR(scheduled_lr(s, 1.0f, 100), 0.01, 1e-7);
  EXPECT_NEAR(scheduled_lr(s, 1.0f, 1000), 0.01, 1e-7);  // clamped after the end
  for (int64_t t = 1; t <= 100; ++t)
    EXPECT_LE(scheduled_lr(s, 1.0f, t), scheduled_lr(s, 1.0f, t - 1)) << t;
  // With warm-up, the decay starts after it and spans total - warmup steps.
  ScheduleConfig w{.name = "cosine", .warmup_steps = 10, .total_steps = 110};
  EXPECT_FLOAT_EQ(scheduled_lr(w, 2.0f, 0), 0.2f);
  EXPECT_FLOAT_EQ(scheduled_lr(w, 2.0f, 9), 2.0f);
  EXPECT_FLOAT_EQ(scheduled_lr(w, 2.0f, 10), 2.0f);
  EXPECT_NEAR(scheduled_lr(w, 2.0f, 60), 1.0, 1e-6);
  EXPECT_NEAR(scheduled_lr(w, 2.0f, 110), 0.0, 1e-7);
}

TEST(Schedule, ValidateRejectsBadConfigs) {
  std::string msg = validate_error({.name = "linear"});
  EXPECT_NE(msg.find("\"linear\""), std::string::npos) << msg;
  for (const auto& n : schedule_names()) EXPECT_NE(msg.find(n), std::string::npos) << msg;
  msg = validate_error({.name = "step"});
  EXPECT_NE(msg.find("step"), std::string::npos) << msg;
  msg = validate_error({.name = "constant", .warmup_steps = -1});
  EXPECT_NE(msg.find("warmup"), std::string::npos) << msg;
  EXPECT_EQ(validate_error({.name = "step", .step_size = 5}), "");
  EXPECT_EQ(validate_error({.name = "cosine", .total_steps = 100}), "");
  EXPECT_EQ(validate_error({}), "");
}

}  // namespace
}  // namespace pare::optim

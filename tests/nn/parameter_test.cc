// Parameters, masks and the contiguous ParameterStore.
#include <gtest/gtest.h>

#include "nn/nn_test_util.h"
#include "pare/nn/module.h"
#include "pare/nn/parameter.h"

namespace pare::nn {
namespace {

using autograd::Var;
using testing::expect_error;
using testing::random_labels;
using testing::random_tensor;
using testing::values_of;

TEST(ParameterStore, ValuesAndGradsAreContiguousViews) {
  auto m = Model::build(preset("lenet5"), 0);
  ParameterStore& store = m->store();
  EXPECT_EQ(store.values().numel(), m->num_parameters());
  EXPECT_EQ(store.grads().numel(), m->num_parameters());
  int64_t offset = 0;
  for (Parameter* p : m->parameters()) {
    EXPECT_TRUE(p->value().shares_storage_with(store.values())) << p->name;
    EXPECT_EQ(p->value().f32(), store.values().f32() + offset) << p->name;
    ASSERT_TRUE(p->grad().defined()) << p->name;
    EXPECT_EQ(p->grad().f32(), store.grads().f32() + offset) << p->name;
    EXPECT_EQ(p->grad().shape(), p->value().shape()) << p->name;
    ASSERT_TRUE(p->initial.defined()) << p->name;
    EXPECT_EQ(m->parameters()[static_cast<size_t>(p->index)], p) << p->name;
    EXPECT_EQ(p->initial.shape(), p->value().shape()) << p->name;
    offset += p->numel();
  }
  EXPECT_EQ(offset, m->num_parameters());
  // Writing through the store is visible through the parameter and back.
  store.values().f32()[0] = 123.0f;
  EXPECT_EQ(m->parameters()[0]->value().f32()[0], 123.0f);
  m->parameters().back()->value().f32()[0] = -7.0f;
  EXPECT_EQ(store.values().f32()[store.numel() - m->parameters().back()->numel()], -7.0f);
}

TEST(ParameterStore, BackwardWritesIntoTheGradBlob) {
  auto m = Model::build(preset("lenet300"), 0);
  ForwardContext ctx;
  m->store().zero_grad();
  m->loss(m->forward(Var(random_tensor({4, 784}, 1)), ctx), random_labels(4, 10, 2)).backward();
  double norm = 0;
  for (float g : m->store().grads().span_f32()) norm += double(g) * g;
  EXPECT_GT(norm, 0.0);
  // Each parameter's grad is still the view into the blob.
  int64_t offset = 0;
  for (Parameter* p : m->parameters()) {
    EXPECT_EQ(p->grad().f32(), m->store().grads().f32() + offset) << p->name;
    offset += p->numel();
  }
}

TEST(ParameterStore, ZeroGradZeroesAll) {
  auto m = Model::build(preset("lenet5"), 0);
  m->store().grads().fill(3.0f);
  for (Parameter* p : m->parameters()) EXPECT_EQ(p->grad().f32()[0], 3.0f);
  m->store().zero_grad();
  for (float g : m->store().grads().span_f32()) ASSERT_EQ(g, 0.0f);
  for (Parameter* p : m->parameters())
    for (float g : p->grad().span_f32()) ASSERT_EQ(g, 0.0f) << p->name;
}

TEST(ParameterStore, RewindRestoresInitialValuesAndReappliesMasks) {
  auto m = Model::build(preset("lenet300"), 8);
  const auto init = values_of(*m);
  // Initial copies equal the built values.
  int64_t offset = 0;
  for (Parameter* p : m->parameters()) {
    for (int64_t i = 0; i < p->numel(); ++i)
      ASSERT_EQ(p->initial.f32()[i], init[static_cast<size_t>(offset + i)]) << p->name;
    offset += p->numel();
  }
  // Train-like drift, then prune half of the first layer.
  m->store().values().fill(0.5f);
  Parameter* w = m->find("linear1.weight");
  ASSERT_NE(w, nullptr);
  w->mask = Tensor::full(w->value().shape(), 1.0f);
  for (int64_t i = 0; i < w->numel(); i += 2) w->mask.f32()[i] = 0.0f;
  m->store().rewind();
  offset = 0;
  for (Parameter* p : m->parameters()) {
    for (int64_t i = 0; i < p->numel(); ++i) {
      const float want = (p == w && i % 2 == 0) ? 0.0f : init[static_cast<size_t>(offset + i)];
      ASSERT_EQ(p->value().f32()[i], want) << p->name << "[" << i << "]";
    }
    offset += p->numel();
  }
  // The saved initial values themselves are untouched by masking.
  EXPECT_EQ(w->initial.f32()[0], init[0]);
  // Removing the mask and rewinding brings the pruned weights back.
  w->mask = Tensor();
  m->store().rewind();
  EXPECT_EQ(values_of(*m), init);
}

TEST(ParameterStore, InitializeAppliesMasks) {
  auto m = Model::build(preset("lenet300"), 8);
  Parameter* w = m->find("linear3.weight");
  ASSERT_NE(w, nullptr);
  w->mask = Tensor::zeros(w->value().shape());
  m->initialize(9);
  for (float v : w->value().span_f32()) ASSERT_EQ(v, 0.0f);
  // ...while `initial` keeps the unmasked draw, so removing the mask and rewinding restores it.
  w->mask = Tensor();
  m->store().rewind();
  auto fresh = Model::build(preset("lenet300"), 9);
  EXPECT_EQ(values_of(*m), values_of(*fresh));
}

TEST(Parameter, ApplyMask) {
  Parameter p;
  p.name = "w";
  p.var = Var(Tensor::from({2, 3}, std::vector<float>{1, -2, 3, -4, 5, -6}), true);
  p.apply_mask();  // no mask: no-op
  EXPECT_EQ(p.value().f32()[1], -2.0f);
  p.mask = Tensor::from({2, 3}, std::vector<float>{1, 0, 1, 0, 0, 1});
  p.apply_mask();
  const float want[] = {1, 0, 3, 0, 0, -6};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(p.value().f32()[i], want[i]) << i;
  // Idempotent.
  p.apply_mask();
  for (int i = 0; i < 6; ++i) EXPECT_EQ(p.value().f32()[i], want[i]) << i;
  p.mask = Tensor::full({3, 2}, 1.0f);
  expect_error([&] { p.apply_mask(); }, {"w", "(3, 2)", "(2, 3)"});
}

TEST(ParameterStore, PackStandaloneParameters) {
  Parameter a, b;
  a.name = "a";
  a.var = Var(Tensor::from({2}, std::vector<float>{1, 2}), true);
  b.name = "b";
  b.var = Var(Tensor::from({1, 3}, std::vector<float>{3, 4, 5}), true);
  ParameterStore store;
  store.pack({&a, &b});
  EXPECT_EQ(store.numel(), 5);
  const float want[] = {1, 2, 3, 4, 5};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(store.values().f32()[i], want[i]);
  EXPECT_EQ(b.value().shape(), Shape({1, 3}));
  EXPECT_EQ(b.value().f32(), store.values().f32() + 2);
  EXPECT_EQ(b.grad().f32(), store.grads().f32() + 2);
  for (float g : store.grads().span_f32()) EXPECT_EQ(g, 0.0f);
  store.values().fill(0.0f);
  store.rewind();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(store.values().f32()[i], want[i]);
}

}  // namespace
}  // namespace pare::nn

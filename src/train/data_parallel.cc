// Gradient sums and model checks across ranks; see data_parallel.h.
#include "pare/train/data_parallel.h"

#include <cstring>

#include "pare/base/bytes.h"
#include "pare/base/clock.h"
#include "pare/base/error.h"
#include "pare/base/thread_pool.h"
#include "pare/nn/sparse_dispatch.h"
#include "pare/nn/spec.h"

namespace pare::train {

namespace {

uint32_t crc_of(const Tensor& t, uint32_t crc = 0) {
  return t.defined() ? crc32_of(t.raw(), static_cast<size_t>(t.numel()) * dtype_size(t.dtype()), crc) : crc;
}

// What must agree across ranks before their parameters can be matched up:
// the spec, and each parameter's name, shape and whether it has a mask.
std::string structure_of(const nn::Model& model) {
  std::string s = nn::model_spec_to_json(model.spec());
  for (const nn::Parameter* p : model.parameters())
    s += "\n" + p->name + " " + p->value().shape().str() + (p->mask.defined() ? " masked" : "");
  return s;
}

}  // namespace

DataParallel::DataParallel(dist::Communicator* comm, int64_t shards) : comm_(comm) {
  if (comm_) {
    rank_ = comm_->rank();
    size_ = comm_->size();
  }
  if (shards < 0) fail("--shards must be >= 0, got ", shards);
  if (size_ > 1) {
    // Every rank must cut batches the same way: rank 0's S for all, checked.
    double s[2] = {static_cast<double>(shards), static_cast<double>(shards) * shards};
    comm_->allreduce_sum(std::span<double>(s));
    if (s[0] * s[0] != s[1] * size_)
      fail("--shards differs between ranks; every rank must pass the same value");
    shards_ = shards > 0 ? shards : static_cast<int64_t>(size_) * num_threads();
    double root = static_cast<double>(shards_);
    comm_->broadcast(std::as_writable_bytes(std::span<double>(&root, 1)), 0);
    shards_ = static_cast<int64_t>(root);
    if (shards_ < size_)
      fail("--shards ", shards_, " is fewer than the ", size_, " ranks: every rank needs a shard");
  } else {
    shards_ = shards;
  }
}

std::string DataParallel::name() const { return comm_ ? comm_->name() : "local"; }

std::pair<int, int> DataParallel::shards_of(int r, int total) const {
  return {static_cast<int>(ThreadPool::chunk_begin(total, size_, r)),
          static_cast<int>(ThreadPool::chunk_begin(total, size_, r + 1))};
}

int DataParallel::max_local_shards() const {
  return static_cast<int>((shards_ + size_ - 1) / size_);
}

std::string DataParallel::broadcast_string(const std::string& on_rank0) {
  if (size_ == 1) return on_rank0;
  int64_t n = static_cast<int64_t>(on_rank0.size());
  comm_->broadcast(std::as_writable_bytes(std::span<int64_t>(&n, 1)), 0);
  std::string s = rank_ == 0 ? on_rank0 : std::string(static_cast<size_t>(n), '\0');
  comm_->broadcast(std::as_writable_bytes(std::span<char>(s.data(), s.size())), 0);
  return s;
}

void DataParallel::sum(std::span<double> values) {
  if (size_ > 1) comm_->allreduce_sum(values);
}

void DataParallel::broadcast_model(nn::Model& model) {
  if (size_ == 1) return;
  const std::string mine = structure_of(model);
  const std::string root = broadcast_string(mine);
  double differs = mine != root ? 1 : 0;
  sum(std::span<double>(&differs, 1));
  if (differs > 0)
    fail("data-parallel training: the model on ", static_cast<int>(differs), " of ", size_,
         " ranks differs from rank 0's in its layers or masks (",
         mine != root ? "this rank's is different" : "this rank's matches rank 0's",
         "); every rank must load the same model");
  for (nn::Parameter* p : model.parameters()) {
    comm_->broadcast(std::span<float>(p->value().f32(), static_cast<size_t>(p->numel())), 0);
    comm_->broadcast(std::span<float>(p->initial.f32(), static_cast<size_t>(p->numel())), 0);
    if (p->mask.defined())
      comm_->broadcast(std::span<float>(p->mask.f32(), static_cast<size_t>(p->numel())), 0);
  }
}

void DataParallel::plan(const nn::Model& model) {
  const auto& params = model.parameters();
  alive_.assign(params.size(), {});
  for (size_t i = 0; i < params.size(); ++i) {
    const nn::Parameter& p = *params[i];
    PARE_CHECK(!p.packed.defined(), "data-parallel steps need dense storage: ", p.name, " is packed");
    if (!p.mask.defined()) continue;
    const float* m = p.mask.f32();
    for (int64_t j = 0; j < p.numel(); ++j)
      if (m[j] != 0.0f) alive_[i].push_back(j);
  }
  planned_ = true;
}

double DataParallel::step(StepRunner& runner, nn::Model& model, const Tensor& x, const Tensor& y,
                          const Rng& dropout, bool send_dense) {
  PARE_CHECK(active() && planned_ && alive_.size() == model.parameters().size(),
             "DataParallel::plan must run before step");
  const int64_t batch = x.dim(0);
  // A batch smaller than S (an epoch's last) is cut into B shards of one.
  const int total = static_cast<int>(std::min<int64_t>(shards_, batch));
  const auto [q0, q1] = shards_of(rank_, total);
  std::vector<double> losses;
  if (q1 > q0) losses = runner.run_shards(x, y, dropout, q0, q1, total);
  const Stopwatch timer;
  const auto& params = model.parameters();
  auto sent_masked = [&](size_t i) { return !send_dense && !alive_[i].empty(); };
  // A row: the entries each parameter sends, then the shard's loss; the
  // same layout on every rank (the masks are the same).
  size_t width = 1;
  for (size_t i = 0; i < params.size(); ++i)
    width += sent_masked(i) ? alive_[i].size() : static_cast<size_t>(params[i]->numel());
  rows_.resize(width * static_cast<size_t>(total));
  for (int q = q0; q < q1; ++q) {
    const float* blob = runner.shard_grads(q - q0).f32();
    float* out = rows_.data() + static_cast<size_t>(q) * width;
    int64_t offset = 0;  // of the parameter in the blob
    for (size_t i = 0; i < params.size(); ++i) {
      const float* g = blob + offset;
      if (sent_masked(i)) {
        for (int64_t j : alive_[i]) *out++ = g[j];
      } else {
        std::memcpy(out, g, static_cast<size_t>(params[i]->numel()) * sizeof(float));
        out += params[i]->numel();
      }
      offset += params[i]->numel();
    }
    *out = static_cast<float>(losses[static_cast<size_t>(q - q0)]);
  }
  summed_.resize(width);
  if (size_ > 1 && total == size_) {
    // One shard per rank: the communicator's rank-ordered allreduce adds the
    // same rows in the same order as the sum below, so it gives the same
    // bits, and sends 2 (K - 1) / K rows per rank instead of K - 1.
    std::memcpy(summed_.data(), rows_.data() + static_cast<size_t>(q0) * width, width * sizeof(float));
    comm_->allreduce_sum(std::span<float>(summed_));
  } else {
    // The allgather: rank r's rows, on every rank; then the sum in shard order.
    for (int r = 0; r < size_ && size_ > 1; ++r) {
      const auto [r0, r1] = shards_of(r, total);
      comm_->broadcast(std::span<float>(rows_.data() + static_cast<size_t>(r0) * width,
                                        static_cast<size_t>(r1 - r0) * width),
                       r);
    }
    dist::sum_in_rank_order(total, static_cast<int64_t>(width), summed_.data(), rows_.data());
  }
  const float* in = summed_.data();
  for (size_t i = 0; i < params.size(); ++i) {
    nn::Parameter& p = *params[i];
    float* g = p.grad().f32();
    if (sent_masked(i)) {
      std::memset(g, 0, static_cast<size_t>(p.numel()) * sizeof(float));
      for (int64_t j : alive_[i]) g[j] = *in++;
    } else {
      std::memcpy(g, in, static_cast<size_t>(p.numel()) * sizeof(float));
      in += p.numel();
    }
  }
  floats_sent_ += static_cast<double>(width) * (q1 - q0);
  exchange_seconds_ += timer.seconds();
  return *in;
}

void DataParallel::check_in_sync(nn::Model& model, const std::string& when) {
  if (size_ == 1) return;
  nn::sync_sparse_to_dense(model);
  std::vector<uint32_t> mine;
  for (const nn::Parameter* p : model.parameters()) {
    mine.push_back(crc_of(p->value()));
    mine.push_back(crc_of(p->mask));
  }
  std::vector<uint32_t> root = mine;
  comm_->broadcast(std::as_writable_bytes(std::span<uint32_t>(root)), 0);
  double differs = mine != root ? 1 : 0;
  sum(std::span<double>(&differs, 1));
  if (differs > 0) {
    std::string first;
    for (size_t i = 0; i < mine.size() && first.empty(); ++i)
      if (mine[i] != root[i])
        first = model.parameters()[i / 2]->name + (i % 2 ? " (mask)" : " (values)");
    fail("data-parallel training: ", when, ", the weights of ", static_cast<int>(differs), " of ", size_,
         " ranks differ from rank 0's", first.empty() ? std::string() : "; here first in " + first,
         " (a rank computed a different step: a bug, or ranks built differently)");
  }
}

}  // namespace pare::train

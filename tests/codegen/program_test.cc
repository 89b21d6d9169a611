// The integer program (codegen/program.h) and its C (codegen/emit_c.h):
// fixed-point requantization is exact to its definition; the program follows
// pare's float-requantizing int8 inference (io::Int8Net) to within a step of
// the output grid; the arena plan is the largest live pair and no step's input
// and output overlap; the C holds only the kernels a model uses and is the
// same for the same model; the runtime includes nothing but the C library's
// integer headers; what has no integer form is refused by name.
#include "pare/codegen/program.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "pare/base/rng.h"
#include "pare/codegen/emit_c.h"
#include "pare/codegen/runtime/pare_runtime.h"
#include "pare/io/compress.h"
#include "pare/io/int8_net.h"
#include "pare/io/pare_model.h"
#include "pare/nn/spec.h"
#include "testing/errors.h"
#include "testing/masks.h"

namespace pare::codegen {
namespace {

using json = nlohmann::json;
using testing::expect_error;

TEST(FixedPoint, MultiplierIsWithinItsLastBitAndShiftInRange) {
  Rng rng(1);
  for (int i = 0; i < 2000; ++i) {
    const double m = std::exp(rng.uniform() * 40.0 - 30.0);  // e^-30 .. e^10
    int32_t mult = 0;
    int8_t shift = 0;
    fixed_point_multiplier(m, &mult, &shift);
    ASSERT_GE(shift, 1);
    ASSERT_LE(shift, 62);
    ASSERT_GE(mult, 0);
    const double got = std::ldexp(static_cast<double>(mult), -shift);
    if (shift < 62) {
      EXPECT_GE(mult, 1 << 30) << m;  // normalised: 31 significant bits
      EXPECT_NEAR(got, m, m * std::ldexp(1.0, -30)) << m;
    } else {
      EXPECT_NEAR(got, m, std::ldexp(1.0, -62)) << m;  // tiny: the last bit of 2^-62
    }
  }
  int32_t mult = 7;
  int8_t shift = 0;
  fixed_point_multiplier(0.0, &mult, &shift);
  EXPECT_EQ(mult, 0);
  EXPECT_EQ(shift, 1);
  expect_error([&] { fixed_point_multiplier(std::ldexp(1.0, 31), &mult, &shift); }, {"too large"});
  expect_error([&] { fixed_point_multiplier(std::nan(""), &mult, &shift); }, {"finite"});
}

TEST(FixedPoint, RequantizeRoundsHalfUpExactly) {
  Rng rng(2);
  for (int i = 0; i < 100000; ++i) {
    const auto acc = static_cast<int32_t>(rng.next_u64());
    const auto mult = static_cast<int32_t>(rng.next_u64() >> 33);  // [0, 2^31)
    const int32_t shift = 1 + static_cast<int32_t>(rng.next_u64() % 62);
    const __int128 p = static_cast<__int128>(acc) * mult;
    const __int128 half = static_cast<__int128>(1) << (shift - 1), den = static_cast<__int128>(1) << shift;
    // floor((p + half) / den), with floor for negatives.
    __int128 num = p + half, q = num / den;
    if (num % den != 0 && num < 0) --q;
    ASSERT_EQ(pare_requantize(acc, mult, shift), static_cast<int32_t>(q)) << acc << " " << mult << " " << shift;
  }
}

TEST(Runtime, AveragePoolRequantizesTheWindowSum) {
  // Same grid in and out: the multiplier is 1/4 = 2^30 / 2^32.
  const int8_t x[16] = {1, 2, 0, 0, -1, -2, 0, 0, 1, 1, 0, 0, -1, -1, 0, 0};  // four 2x2 channels
  int8_t y[4];
  pare_avgpool_s8(x, 0, 4, 2, 2, 2, 2, 1 << 30, 32, 0, y);
  EXPECT_EQ(y[0], 1);   // 0.75
  EXPECT_EQ(y[1], -1);  // -0.75
  EXPECT_EQ(y[2], 1);   // 0.5: half up
  EXPECT_EQ(y[3], 0);   // -0.5: half up
  // Zero points: (q - 10) averaged, then onto zero point -3.
  const int8_t z[4] = {14, 14, 10, 10};  // mean of (q - 10) = 2
  pare_avgpool_s8(z, 10, 1, 2, 2, 2, 2, 1 << 30, 32, -3, y);
  EXPECT_EQ(y[0], -1);
}

nn::ModelSpec small_cnn() {
  return nn::parse_model_spec(R"({"name": "cnn", "input": [2, 9, 9], "layers": [
    {"type": "conv2d", "out": 3, "kernel": 3, "pad": 1}, {"type": "relu"}, {"type": "maxpool", "kernel": 2},
    {"type": "conv2d", "out": 4, "kernel": 2, "stride": 2, "bias": false}, {"type": "relu"},
    {"type": "avgpool", "kernel": 2, "stride": 1}, {"type": "flatten"},
    {"type": "linear", "out": 6}, {"type": "relu"}, {"type": "linear", "out": 5}]})",
                              "cnn.json");
}

// An int8 file of `spec` (some weights pruned) calibrated on x, with the
// output grid in META, and the inputs.
struct Int8Model {
  format::File file;
  std::vector<float> x;
  int64_t n = 0;
};
Int8Model int8_model(const nn::ModelSpec& spec, uint64_t seed, int64_t n) {
  auto m = nn::Model::build(spec, seed);
  Rng rng(seed + 1);
  testing::mask_weights_at_random(*m, 0.6f, rng);
  Int8Model out;
  out.n = n;
  int64_t in = 1;
  for (int64_t d : spec.input) in *= d;
  out.x.resize(static_cast<size_t>(n * in));
  for (float& v : out.x) v = static_cast<float>(rng.normal());
  json acts = io::calibrate_activations(*m, out.x.data(), n);
  const io::ActivationGrid g = calibrate_output(*m, out.x.data(), n);
  acts["output"] = {{"scale", g.scale}, {"zero_point", g.zero_point}};
  out.file = io::to_file(*m, json{{"activations", acts}}.dump());
  for (format::Tensor& t : out.file.tensors)
    if (t.dims.size() >= 2) io::quantize_s8_per_channel(t);
  out.file = format::decode(format::encode(out.file), "mem.pare");
  return out;
}

std::vector<int8_t> run_all(const Program& p, const std::vector<float>& x, int64_t n) {
  std::vector<int8_t> q(static_cast<size_t>(p.input_size)), out(static_cast<size_t>(n * p.output_size));
  std::vector<int8_t> arena(static_cast<size_t>(std::max<int64_t>(p.arena_bytes, 1)));
  for (int64_t i = 0; i < n; ++i) {
    quantize_input(p, x.data() + i * p.input_size, q.data(), /*standardized=*/true);
    run(p, q.data(), out.data() + i * p.output_size, arena.data());
  }
  return out;
}

void expect_follows_int8net(const nn::ModelSpec& spec, const std::string& sparse) {
  const Int8Model m = int8_model(spec, 3, 64);
  PlanOptions opt;
  opt.sparse = sparse;
  const Program p = plan(m.file, "mem.pare", opt);
  const std::vector<int8_t> got = run_all(p, m.x, m.n);
  const io::Int8Net net = io::Int8Net::from_file(m.file, "mem.pare");
  std::vector<float> want(static_cast<size_t>(m.n * p.output_size));
  net.forward(m.n, m.x.data(), want.data());
  // Each step rounds once more than Int8Net does (its outputs onto the next
  // grid); the outputs stay within a few steps of the output grid.
  int far = 0, agree = 0;
  for (int64_t i = 0; i < m.n; ++i) {
    int64_t best_got = 0, best_want = 0;
    for (int64_t j = 0; j < p.output_size; ++j) {
      const size_t k = static_cast<size_t>(i * p.output_size + j);
      const double real = (got[k] - p.output.zero_point) * static_cast<double>(p.output.scale);
      far += std::fabs(real - want[k]) > 3 * p.output.scale;
      if (got[k] > got[static_cast<size_t>(i * p.output_size + best_got)]) best_got = j;
      if (want[k] > want[static_cast<size_t>(i * p.output_size + best_want)]) best_want = j;
    }
    agree += best_got == best_want;
  }
  EXPECT_LE(far, m.n * p.output_size / 50) << sparse;
  EXPECT_GE(agree, m.n * 9 / 10) << sparse;
}

TEST(Program, FollowsPareInt8InferenceOnAConvNetAndAnMlp) {
  expect_follows_int8net(small_cnn(), "auto");
  const nn::ModelSpec mlp = nn::parse_model_spec(R"({"name": "mlp", "input": [40], "layers": [
    {"type": "linear", "out": 30}, {"type": "relu"}, {"type": "linear", "out": 20}, {"type": "relu"},
    {"type": "linear", "out": 7}]})",
                                                 "mlp.json");
  expect_follows_int8net(mlp, "on");
  expect_follows_int8net(mlp, "off");
}

TEST(Program, SparseAndDenseLinearLayersGiveTheSameBytes) {
  const nn::ModelSpec mlp = nn::parse_model_spec(R"({"name": "mlp", "input": [40], "layers": [
    {"type": "linear", "out": 30}, {"type": "relu"}, {"type": "linear", "out": 7}]})",
                                                 "mlp.json");
  const Int8Model m = int8_model(mlp, 5, 20);
  PlanOptions on, off;
  on.sparse = "on";
  off.sparse = "off";
  const Program ps = plan(m.file, "m", on), pd = plan(m.file, "m", off);
  EXPECT_EQ(ps.ops[0].kind, OpKind::csr);
  EXPECT_EQ(pd.ops[0].kind, OpKind::dense);
  EXPECT_LT(ps.ops[0].macs, pd.ops[0].macs);  // only kept weights
  EXPECT_EQ(run_all(ps, m.x, m.n), run_all(pd, m.x, m.n));
}

// A shared-weight file (io::share_weights) goes out as codes into an int8
// table, dense or CSR; the four linear encodings give the same bytes, the
// smallest is chosen, and the codes decode to the table's values.
TEST(Program, SharedWeightCodesRunLikeTheirValues) {
  const nn::ModelSpec mlp = nn::parse_model_spec(R"({"name": "mlp", "input": [300], "layers": [
    {"type": "linear", "out": 20}, {"type": "relu"}, {"type": "linear", "out": 6}]})",
                                                 "mlp.json");
  Int8Model m = int8_model(mlp, 8, 16);  // weights s8, 60 % kept
  // The same model with 3-bit shared weights instead of s8.
  auto model = io::from_file(m.file, "m");
  format::File shared = io::to_file(*model, m.file.meta_json);
  for (format::Tensor& t : shared.tensors)
    if (t.dims.size() >= 2) io::share_weights(t, 3);
  shared = format::decode(format::encode(shared), "shared.pare");
  PlanOptions on, off, best;
  on.sparse = "on";
  off.sparse = "off";
  const Program pc = plan(shared, "s", on), pd = plan(shared, "s", off), pa = plan(shared, "s", best);
  ASSERT_EQ(pc.ops[0].kind, OpKind::csr);
  ASSERT_EQ(pd.ops[0].kind, OpKind::dense);
  EXPECT_EQ(pd.ops[0].bits, 4);  // 8 centroids and a code for the pruned zeros
  EXPECT_EQ(kernel_name(pd.ops[0]), "dense_codes");
  EXPECT_LE(pa.ops[0].constant_bytes(), std::min(pc.ops[0].constant_bytes(), pd.ops[0].constant_bytes()));
  // Packed codes: 300 x 20 four-bit codes and the spare byte.
  EXPECT_EQ(pd.ops[0].codes.size(), 300u * 20u / 2u + 1u);
  EXPECT_EQ(run_all(pc, m.x, m.n), run_all(pd, m.x, m.n));
  EXPECT_EQ(run_all(pa, m.x, m.n), run_all(pd, m.x, m.n));
  // The table holds the centroids on one int8 scale: its largest is +-127.
  int top = 0;
  for (int8_t v : pd.ops[0].lut) top = std::max(top, std::abs(static_cast<int>(v)));
  EXPECT_EQ(top, 127);
  // Decoded codes are the table's values at the kept positions, 0 elsewhere.
  const format::Tensor& t = shared.tensors[0];
  for (uint32_t i = 0; i < 300u * 20u; ++i) {
    const int32_t code = pare_code(pd.ops[0].codes.data(), i, pd.ops[0].bits);
    const bool present = t.present.empty() || t.present[i];
    ASSERT_EQ(pd.ops[0].lut[static_cast<size_t>(code)], present ? pd.ops[0].lut[t.values[i]] : 0) << i;
  }
}

// Column steps of one byte: a gap over 255 takes a 0 byte per 255 columns.
TEST(Program, CsrStepsCrossLongGaps) {
  const nn::ModelSpec wide = nn::parse_model_spec(R"({"name": "wide", "input": [1000], "layers": [
    {"type": "linear", "out": 2}]})",
                                                  "wide.json");
  auto model = nn::Model::build(wide, 1);
  nn::Parameter* w = model->find("linear1.weight");
  w->mask = Tensor::empty(w->value().shape());
  for (float& v : w->mask.span_f32()) v = 0.0f;
  for (int64_t c : {0, 255, 256, 700, 999}) w->mask.f32()[c] = 1.0f;  // row 0
  w->mask.f32()[1000 + 999] = 1.0f;                                   // row 1: one weight at the end
  w->apply_mask();
  std::vector<float> x(2000);
  Rng rng(3);
  for (float& v : x) v = rng.normal();
  json acts = io::calibrate_activations(*model, x.data(), 2);
  const io::ActivationGrid g = calibrate_output(*model, x.data(), 2);
  acts["output"] = {{"scale", g.scale}, {"zero_point", g.zero_point}};
  format::File f = io::to_file(*model, json{{"activations", acts}}.dump());
  for (format::Tensor& t : f.tensors)
    if (t.dims.size() >= 2) io::quantize_s8_per_channel(t);
  PlanOptions on, off;
  on.sparse = "on";
  off.sparse = "off";
  const Program pc = plan(f, "w", on), pd = plan(f, "w", off);
  // Row 0: steps 1, 255, 1, 0 (255) + 189, 0 (255) + 44; row 1: three 0s (765) + 235.
  const std::vector<uint8_t> want{1, 255, 1, 0, 189, 0, 44, 0, 0, 0, 235};
  EXPECT_EQ(pc.ops[0].steps, want);
  EXPECT_EQ(run_all(pc, x, 2), run_all(pd, x, 2));
}

TEST(Program, ArenaIsTheLargestLivePairAndNoStepOverlapsItself) {
  const Int8Model m = int8_model(small_cnn(), 4, 4);
  const Program p = plan(m.file, "mem.pare");
  ASSERT_GE(p.ops.size(), 5u);
  int64_t need = 0;
  for (size_t k = 0; k < p.ops.size(); ++k) {
    const Op& op = p.ops[k];
    EXPECT_EQ(op.in_offset < 0, k == 0) << k;
    EXPECT_EQ(op.out_offset < 0, k + 1 == p.ops.size()) << k;
    const int64_t in = op.in_offset < 0 ? 0 : op.in_bytes, out = op.out_offset < 0 ? 0 : op.out_bytes;
    if (op.in_offset >= 0) {
      EXPECT_LE(op.in_offset + op.in_bytes, p.arena_bytes);
    }
    if (op.out_offset >= 0) {
      EXPECT_LE(op.out_offset + op.out_bytes, p.arena_bytes);
    }
    const bool in_place = op.kind == OpKind::relu && op.in_offset == op.out_offset;
    if (in_place) {
      need = std::max(need, in);
    } else {
      need = std::max(need, in + out);
      if (op.in_offset >= 0 && op.out_offset >= 0) {  // disjoint ranges
        EXPECT_TRUE(op.in_offset + op.in_bytes <= op.out_offset || op.out_offset + op.out_bytes <= op.in_offset)
            << op.layer;
      }
    }
    if (k > 0) {
      EXPECT_EQ(op.in_offset, p.ops[k - 1].out_offset);
    }
  }
  EXPECT_EQ(p.arena_bytes, need);
}

// The program of a 12-8-3 MLP with dense kernels, for the tests of emit_c.
Program small_dense_mlp_program() {
  const nn::ModelSpec mlp = nn::parse_model_spec(R"({"name": "mlp", "input": [12], "layers": [
    {"type": "linear", "out": 8}, {"type": "relu"}, {"type": "linear", "out": 3}]})",
                                                 "mlp.json");
  const Int8Model m = int8_model(mlp, 7, 10);
  PlanOptions off;
  off.sparse = "off";
  return plan(m.file, "m", off);
}

TEST(EmitC, OnlyTheKernelsUsedAndTheSameBytesEachTime) {
  const Program p = small_dense_mlp_program();
  const auto a = emit_c(p), b = emit_c(p);
  ASSERT_EQ(a.size(), 4u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].name, b[i].name);
    EXPECT_EQ(a[i].text, b[i].text) << a[i].name;
  }
  const std::string& runtime = a[3].text;
  EXPECT_EQ(a[3].name, "pare_runtime.c");
  EXPECT_NE(runtime.find("void pare_dense_s8("), std::string::npos);
  EXPECT_EQ(runtime.find("pare_conv2d_s8"), std::string::npos);
  EXPECT_EQ(runtime.find("pare_csr_s8"), std::string::npos);
  EXPECT_EQ(runtime.find("pare-kernel"), std::string::npos);  // markers removed
  const std::string& model_h = a[0].text;
  EXPECT_NE(model_h.find("#define PARE_MODEL_ARENA_BYTES " + std::to_string(p.arena_bytes) + "\n"),
            std::string::npos);
  EXPECT_NE(a[1].text.find("static int8_t pare_model_arena[" + std::to_string(std::max<int64_t>(p.arena_bytes, 1)) + "]"),
            std::string::npos);
}

// A model file's text never becomes a path or code: the spec's name is
// refused unless it is a plain word, the emitted files have fixed names, and
// a name set in C++ is made inert in the comments it appears in.
TEST(EmitC, NamesFromAModelNeverBecomePathsOrCode) {
  for (const char* hostile : {"../../escape", "x */ int injected = 1; /*", "a\nb", "", "/etc/passwd"}) {
    const std::string text = nlohmann::json{{"name", hostile}, {"input", {4}},
                                            {"layers", {{{"type", "linear"}, {"out", 2}}}}}.dump();
    const std::string msg = pare::testing::error_message([&] { nn::parse_model_spec(text, "evil.json"); });
    EXPECT_NE(msg.find("evil.json: \"name\" must be 1 to 64 letters, digits"), std::string::npos) << msg;
  }
  Program p = small_dense_mlp_program();
  p.name = "x */ int injected = 1; /* ../../escape";  // as a program built in C++ may be named
  const std::vector<SourceFile> files = emit_c(p);
  std::vector<std::string> names;
  for (const SourceFile& f : files) {
    names.push_back(f.name);
    EXPECT_EQ(f.text.find("int injected"), std::string::npos) << f.name << ": the name left its comment";
  }
  EXPECT_EQ(names, (std::vector<std::string>{"model.h", "model.c", "pare_runtime.h", "pare_runtime.c"}));
  EXPECT_NE(files[0].text.find("from the model \"x____int_injected___1_____.._.._escape\""), std::string::npos);
}

TEST(EmitC, SelectKernelsKeepsNamedBlocks) {
  const std::string text =
      "head\n/* pare-kernel: requantize */\nR\n/* pare-kernel-end */\n\n/* pare-kernel: a */\nA\n"
      "/* pare-kernel-end */\n\n/* pare-kernel: b */\nB\n/* pare-kernel-end */\ntail\n";
  EXPECT_EQ(select_kernels(text, {"b"}), "head\nR\n\nB\ntail\n");
  EXPECT_EQ(select_kernels(text, {}), "head\nR\n\ntail\n");
}

TEST(Runtime, IncludesOnlyTheIntegerCHeaders) {
  const char* src = std::getenv("PARE_SOURCE_DIR");
  ASSERT_TRUE(src && *src) << "PARE_SOURCE_DIR is not set";
  for (const char* f : {"src/codegen/runtime/pare_runtime.h", "src/codegen/runtime/pare_runtime.c"}) {
    std::ifstream in(std::string(src) + "/" + f);
    ASSERT_TRUE(in) << f;
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    static const std::regex inc(R"(#\s*include\s*([<"][^>"]*[>"]))");
    int n = 0;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), inc); it != std::sregex_iterator(); ++it) {
      const std::string h = (*it)[1];
      EXPECT_TRUE(h == "<stdint.h>" || h == "<stddef.h>" || h == "\"pare_runtime.h\"") << f << ": " << h;
      ++n;
    }
    EXPECT_GT(n, 0);
    static const std::regex forbidden(R"(\b(float|double|malloc|free)\b)");
    EXPECT_FALSE(std::regex_search(text, forbidden)) << f;
  }
}

TEST(Program, RefusesWhatHasNoIntegerForm) {
  const nn::ModelSpec mlp = nn::parse_model_spec(R"({"name": "mlp", "input": [6], "layers": [
    {"type": "linear", "out": 4}, {"type": "tanh"}, {"type": "linear", "out": 2}]})",
                                                 "mlp.json");
  auto model = nn::Model::build(mlp, 1);
  format::File f = io::to_file(*model, "");
  expect_error([&] { plan(f, "float.pare"); }, {"float.pare", "activations"});
  f.meta_json = R"({"activations": {"linear1": {"scale": 0.1, "zero_point": 10}, "linear3": {"scale": 0.1, "zero_point": 0}}})";
  expect_error([&] { plan(f, "float.pare"); }, {"output"});
  PlanOptions with_output;
  with_output.output = Grid{0.1f, 0};
  expect_error([&] { plan(f, "float.pare", with_output); }, {"linear1.weight", "not s8"});
  for (format::Tensor& t : f.tensors)
    if (t.dims.size() >= 2) io::quantize_s8_per_channel(t);
  expect_error([&] { plan(f, "q.pare", with_output); }, {"tanh2", "no integer form"});
  PlanOptions bad;
  bad.sparse = "maybe";
  expect_error([&] { plan(f, "q.pare", bad); }, {"--sparse maybe"});
}

}  // namespace
}  // namespace pare::codegen

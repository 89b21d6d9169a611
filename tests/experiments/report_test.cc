// pare report (experiments/report.h): the page carries the data of small
// synthetic runs (curves, the lottery figure, bytes, cost with its Pareto
// front and ledger, the Life table, per-layer sparsity), strings from files
// cannot break out of the page's script, missing data is listed rather than
// fatal, and bad paths give one-line errors. The browser test is
// tests/report/report_browser_test.sh.
#include "pare/experiments/report.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "pare/base/error.h"
#include "pare/base/file.h"
#include "pare/format/pare_file.h"
#include "testing/temp_dir.h"

namespace pare::experiments {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// The JSON the page draws, read back out of the HTML as the browser would.
json page_data(const std::string& html) {
  const std::string open = "<script type=\"application/json\" id=\"pare-data\">";
  const size_t a = html.find(open);
  EXPECT_NE(a, std::string::npos);
  const size_t b = html.find("</script>", a);
  return json::parse(html.substr(a + open.size(), b - a - open.size()));
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

std::string lines(std::initializer_list<json> events) {
  std::string s;
  for (const json& e : events) s += e.dump() + "\n";
  return s;
}

const json* find_by(const json& array, const char* key, const std::string& value) {
  for (const json& x : array)
    if (x.contains(key) && x[key] == value) return &x;
  return nullptr;
}

class ReportTest : public pare::testing::TempDirTest {
 protected:
  std::string put(const std::string& rel, const std::string& bytes) {
    fs::create_directories((dir_ / rel).parent_path());
    return write(rel, bytes);
  }

  // A dense run, a run pruned from it, a ticket, a Life study and a .pare file.
  void write_runs() {
    put("dense/log.jsonl", lines({{{"event", "start"},
                                   {"model", "mlp"},
                                   {"sparsity", 0.0},
                                   {"sparse_training", nullptr}},
                                  {{"event", "epoch"},
                                   {"epoch", 1},
                                   {"train_loss", 0.9},
                                   {"test_loss", 0.8},
                                   {"test_accuracy", 0.7}},
                                  {{"event", "epoch"},
                                   {"epoch", 2},
                                   {"train_loss", 0.5},
                                   {"test_loss", 0.6},
                                   {"test_accuracy", 0.8}},
                                  {{"event", "end"},
                                   {"test_accuracy", 0.8},
                                   {"sparsity", 0.0},
                                   {"flops", 1000.0},
                                   {"seconds", 2.0},
                                   {"cost",
                                    {{"flops", 1000.0},
                                     {"seconds", 2.0},
                                     {"cpu_seconds", 3.5},
                                     {"joules", 40.0},
                                     {"energy",
                                      {{"method", "estimated-cpu-time"},
                                       {"measured", false},
                                       {"detail", "10 W per core"}}},
                                     {"co2e_grams", 0.005},
                                     {"grid_g_per_kwh", 475},
                                     {"pue", 1.0},
                                     {"money", 0.0001},
                                     {"currency", "EUR"},
                                     {"price_per_core_hour", 0.05}}}}}));
    put("pruned/log.jsonl", lines({{{"event", "start"}, {"model", "mlp"}, {"sparsity", 0.75}},
                                   {{"event", "epoch"},
                                    {"epoch", 1},
                                    {"train_loss", 0.7},
                                    {"test_loss", 0.65},
                                    {"test_accuracy", 0.78}},
                                   {{"event", "end"},
                                    {"test_accuracy", 0.78},
                                    {"sparsity", 0.75},
                                    {"flops", 100.0},
                                    {"seconds", 0.5}}}));
    put("pruned/result.json", json{{"command", "prune"},
                                   {"method", "magnitude"},
                                   {"model", "mlp"},
                                   {"sparsity", 0.75},
                                   {"test_accuracy", 0.78},
                                   {"from", (dir_ / "dense" / "model.bin").string()},
                                   {"layers",
                                    {{{"name", "fc1.weight"}, {"density", 0.2}},
                                     {{"name", "fc2.weight"}, {"kept", 5}, {"total", 10}}}}}
                                  .dump());
    json rounds = json::array();
    rounds.push_back({{"round", 0},
                      {"kind", "ticket"},
                      {"density", 1.0},
                      {"test_accuracy", 0.81},
                      {"flops", 1000.0},
                      {"cumulative_flops", 1000.0},
                      {"seconds", 1.0}});
    rounds.push_back({{"round", 1},
                      {"kind", "ticket"},
                      {"density", 0.5},
                      {"test_accuracy", 0.82},
                      {"flops", 500.0},
                      {"cumulative_flops", 1500.0},
                      {"seconds", 1.0},
                      {"layers",
                       {{{"name", "fc1.weight"}, {"density", 0.5}},
                        {{"name", "fc2.weight"}, {"density", 0.6}}}}});
    rounds.push_back({{"round", 1},
                      {"kind", "random"},
                      {"density", 0.5},
                      {"test_accuracy", 0.6},
                      {"flops", 500.0}});
    rounds.push_back({{"round", 1},
                      {"kind", "reinit"},
                      {"density", 0.5},
                      {"test_accuracy", 0.65},
                      {"flops", 500.0}});
    put("ticket/results.json",
        json{{"settings", {{"kind", "ticket"}, {"spec", {{"name", "mlp"}}}}}, {"runs", rounds}}
            .dump());
    put("life/results.json",
        json{{"cells",
              {{{"n", 1},
                {"m", 1},
                {"success_rate", 0.25},
                {"successes", 1},
                {"runs", 4},
                {"ci95", {0.05, 0.7}}},
               {{"n", 1}, {"m", 2}, {"success_rate", 1.0}, {"successes", 4}, {"runs", 4}}}}}
            .dump());
    format::File f;
    f.spec_json = R"({"name": "mlp"})";
    f.meta_json = json{{"source", (dir_ / "pruned" / "model.bin").string()}}.dump();
    format::Tensor w;
    w.name = "fc1.weight";
    w.dims = {2, 4};
    w.values.assign(8 * 4, 0);
    w.present = {1, 0, 0, 0, 1, 0, 0, 0};
    f.tensors.push_back(w);
    fs::create_directories(dir_ / "files");
    format::write_file(path("files/m.pare"), f);
    put("files/m.pare.eval.json", json{{"accuracy", 0.77}}.dump());
  }
};

TEST_F(ReportTest, PageCarriesTheChartDataOfTheRuns) {
  write_runs();
  const Report r = collect_report({dir_.string()});
  const std::string html = render_report_html(r);
  const json d = page_data(html);

  const std::vector<std::string> want = {"curves-loss", "curves-accuracy", "prune-0",
                                         "bytes",       "cost-0",          "cost-1",
                                         "cost-table",  "life-0",          "layers-0"};
  EXPECT_EQ(r.charts, want);
  EXPECT_EQ(d["charts"].get<std::vector<std::string>>(), want);

  // Curves of both training runs; names without the common directory.
  const json* dense = find_by(d["curves"], "run", "dense");
  ASSERT_NE(dense, nullptr);
  EXPECT_EQ(dense->at("train_loss"), json({0.9, 0.5}));
  EXPECT_EQ(dense->at("test_accuracy"), json({70.0, 80.0}));
  EXPECT_NE(find_by(d["curves"], "run", "pruned"), nullptr);

  // The lottery figure: each kind a series, the dense line from the runs.
  ASSERT_EQ(d["prune"].size(), 1u);
  const json& pr = d["prune"][0];
  EXPECT_EQ(pr["model"], "mlp");
  const json* ticket = find_by(pr["series"], "label", "IMP ticket (rewound to init)");
  ASSERT_NE(ticket, nullptr);
  ASSERT_EQ(ticket->at("points").size(), 1u);  // round 0 is the dense line
  EXPECT_DOUBLE_EQ(ticket->at("points")[0]["x"].get<double>(), 50.0);
  EXPECT_DOUBLE_EQ(ticket->at("points")[0]["y"].get<double>(), 82.0);
  EXPECT_NE(find_by(pr["series"], "label", "random mask, same layer sparsity"), nullptr);
  EXPECT_NE(find_by(pr["series"], "label", "reinit: ticket mask, fresh init"), nullptr);
  const json* magnitude = find_by(pr["series"], "label", "magnitude");
  ASSERT_NE(magnitude, nullptr);
  EXPECT_DOUBLE_EQ(magnitude->at("points")[0]["x"].get<double>(), 25.0);
  // Two dense runs (the dense run, the ticket's round 0): one line at their mean.
  ASSERT_EQ(pr["dense"].size(), 1u);
  EXPECT_DOUBLE_EQ(pr["dense"][0]["y"].get<double>(), 80.5);
  EXPECT_EQ(pr["dense"][0]["label"], "dense: mean of 2 runs (80-81 %)");

  // Bytes: the file's size on disk, its accuracy from the saved pare eval.
  ASSERT_EQ(d["bytes"].size(), 1u);
  const json& pt = d["bytes"][0]["points"][0];
  EXPECT_EQ(pt["x"].get<double>(), static_cast<double>(fs::file_size(path("files/m.pare"))));
  EXPECT_DOUBLE_EQ(pt["y"].get<double>(), 77.0);
  EXPECT_NE(pt["accuracy_source"].get<std::string>().find("pare eval"), std::string::npos);

  // Cost: the pruned run carries its parent's training (1000 + 100 FLOPs);
  // the ticket's rounds their cumulative FLOPs. Front: dense (1000, 80) is
  // beaten by ticket round 0 (1000, 81); pruned (1100, 78) by both; round 1
  // (1500, 82) is the most accurate.
  const json& flops = d["cost"][0];
  EXPECT_EQ(flops["axis"], "flops");
  const json* pruned_cost = find_by(flops["points"], "label", "pruned");
  ASSERT_NE(pruned_cost, nullptr);
  EXPECT_DOUBLE_EQ(pruned_cost->at("x").get<double>(), 1100.0);
  std::vector<std::pair<double, double>> front;
  for (const json& p : flops["front"])
    front.push_back({p["x"].get<double>(), p["y"].get<double>()});
  EXPECT_EQ(front, (std::vector<std::pair<double, double>>{{1000.0, 81.0}, {1500.0, 82.0}}));
  // Joules only where the ledger gave them: the dense run and the pruned one
  // (which includes the dense training's energy).
  const json& joules = d["cost"][1];
  EXPECT_EQ(joules["axis"], "joules");
  EXPECT_EQ(joules["points"].size(), 2u);

  // The cost table labels each figure: the ledger's energy is estimated,
  // with its method and detail; the clocks are measured.
  const json* dense_costs = find_by(d["cost_table"], "run", "dense");
  ASSERT_NE(dense_costs, nullptr);
  const json* energy = find_by(dense_costs->at("rows"), "figure", "energy");
  ASSERT_NE(energy, nullptr);
  EXPECT_EQ(energy->at("measured"), "estimated");
  EXPECT_NE(energy->at("how").get<std::string>().find("estimated-cpu-time: 10 W per core"),
            std::string::npos);
  EXPECT_EQ(find_by(dense_costs->at("rows"), "figure", "wall time")->at("measured"), "measured");
  EXPECT_DOUBLE_EQ(
      find_by(dense_costs->at("rows"), "figure", "training FLOPs")->at("value").get<double>(),
      1000.0);
  EXPECT_EQ(find_by(dense_costs->at("rows"), "figure", "training FLOPs")->at("measured"),
            "counted");
  const json* co2 = find_by(dense_costs->at("rows"), "figure", "CO2e");
  ASSERT_NE(co2, nullptr);
  EXPECT_NE(co2->at("how").get<std::string>().find("intensity at 475 g/kWh, PUE 1"),
            std::string::npos);
  EXPECT_EQ(find_by(dense_costs->at("rows"), "figure", "money")->at("unit"), "EUR");
  // The ticket's rounds summed per kind.
  EXPECT_NE(find_by(d["cost_table"], "what", "IMP ticket (rewound to init): 2 trainings together"),
            nullptr);

  // Life: the success table by n and m.
  ASSERT_EQ(d["life"].size(), 1u);
  EXPECT_EQ(d["life"][0]["ms"], json({1, 2}));
  EXPECT_DOUBLE_EQ(d["life"][0]["cells"][0]["rate"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(d["life"][0]["cells"][0]["hi"].get<double>(), 0.7);

  // Per-layer sparsity: the pruned run (kept / total counts too), the
  // ticket's last round and the .pare file's kept weights.
  const json& layers = d["layers"][0];
  EXPECT_EQ(layers["layers"], json({"fc1.weight", "fc2.weight"}));
  const json* from_file = find_by(layers["series"], "label", "files/m.pare");
  ASSERT_NE(from_file, nullptr);
  EXPECT_DOUBLE_EQ(from_file->at("values")["fc1.weight"].get<double>(), 25.0);
  EXPECT_DOUBLE_EQ(
      find_by(layers["series"], "label", "pruned")->at("values")["fc2.weight"].get<double>(), 50.0);

  // One file: Chart.js and the page script inline, nothing fetched.
  EXPECT_NE(html.find(report_chartjs_text()), std::string::npos);
  EXPECT_NE(html.find(report_page_script()), std::string::npos);
  EXPECT_EQ(html.find("<script src"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(count(html, "<script"), count(html, "</script>"));
}

TEST_F(ReportTest, StringsFromFilesCannotEndTheScript) {
  const std::string evil = "</script><img src=x onerror=alert(1)>&\"'\xe2\x80\xa8";
  put("run/log.jsonl", lines({{{"event", "start"}, {"model", evil}},
                              {{"event", "epoch"},
                               {"epoch", 1},
                               {"train_loss", 1.0},
                               {"test_loss", 1.0},
                               {"test_accuracy", 0.5}},
                              {{"event", "end"}, {"test_accuracy", 0.5}, {"flops", 10.0}}}));
  // Bytes that are not UTF-8 in a name do not stop the page either.
  put("run/result.json",
      json{{"command", "prune"}, {"method", "x\xff<!--"}, {"sparsity", 0.5}}.dump(
          -1, ' ', false, json::error_handler_t::replace));
  const ReportOptions opt{.title = "<b>title</b> & more"};
  const std::string html = render_report_html(collect_report({path("run")}, opt), opt);
  // The only </script> are the page's own four closing tags.
  EXPECT_EQ(count(html, "</script>"), 4u);
  EXPECT_EQ(html.find("<img src=x"), std::string::npos);
  EXPECT_EQ(html.find("<!--"), std::string::npos);
  EXPECT_EQ(html.find("\xe2\x80\xa8"), std::string::npos);
  EXPECT_NE(html.find("<title>&lt;b&gt;title&lt;/b&gt; &amp; more</title>"), std::string::npos);
  // The browser reads back exactly what the log said.
  const json d = page_data(html);
  EXPECT_EQ(d["runs"][0]["model"], evil);
  EXPECT_EQ(d["title"], "<b>title</b> & more");
  EXPECT_EQ(json_for_script(R"({"a":"</script>&"})"), R"({"a":"\u003c/script\u003e\u0026"})");
}

TEST_F(ReportTest, MissingDataIsListedNotFatal) {
  // A run that has only started, a log with a torn line, a ticket with no
  // rounds yet, a cost object lacking every field, a .pare file whose
  // accuracy nobody recorded, a results.json of an unknown kind.
  put("started/log.jsonl", lines({{{"event", "start"}, {"model", "mlp"}}}));
  put("torn/log.jsonl", lines({{{"event", "epoch"}, {"epoch", 1}, {"test_accuracy", 0.5}}}) +
                            "{\"event\": \"end\", \"te");
  put("empty-cost/log.jsonl",
      lines({{{"event", "end"}, {"test_accuracy", 0.6}, {"cost", {{"energy", json::object()}}}},
             {{"event", "end"}, {"cost", "not an object"}}}));
  put("ticket/results.json",
      json{{"settings", {{"kind", "ticket"}}}, {"runs", json::array()}}.dump());
  put("other/results.json", json{{"something", 1}}.dump());
  format::File f;
  f.spec_json = R"({"name": "mlp"})";
  format::Tensor w;
  w.name = "w";
  w.dims = {2, 2};
  w.values.assign(16, 0);
  f.tensors.push_back(w);
  format::write_file(path("lone.pare"), f);

  Report r;
  ASSERT_NO_THROW(r = collect_report({dir_.string()}));
  const std::string all = [&] {
    std::string s;
    for (const auto& m : r.missing) s += m + "\n";
    return s;
  }();
  EXPECT_NE(all.find("started: log.jsonl has no epoch or end events yet"), std::string::npos)
      << all;
  EXPECT_NE(all.find("1 lines that are not JSON objects, skipped"), std::string::npos) << all;
  EXPECT_NE(all.find("a ticket file with no rounds yet"), std::string::npos) << all;
  EXPECT_NE(all.find("not a results file pare report knows"), std::string::npos) << all;
  EXPECT_NE(all.find("lone.pare: its accuracy is unknown"), std::string::npos) << all;
  EXPECT_NE(all.find("Game of Life success table: no Life study"), std::string::npos) << all;
  EXPECT_NE(all.find("Accuracy vs remaining weights: no pruned runs"), std::string::npos) << all;
  // The curves of the runs that have epochs are still drawn; the page says the rest.
  EXPECT_EQ(r.charts.front(), "curves-loss");
  const json d = page_data(render_report_html(r));
  EXPECT_EQ(d["missing"].get<std::vector<std::string>>(), r.missing);
}

TEST_F(ReportTest, LifePruneSearchIsDrawnAtTheWeightsItKept) {
  json steps = json::array();
  steps.push_back({{"round", 1},
                   {"attempt", 0},
                   {"alive_before", 100},
                   {"alive_after", 80},
                   {"solved", true},
                   {"test_exact", 1.0}});
  steps.push_back({{"round", 2},
                   {"attempt", 0},
                   {"alive_before", 80},
                   {"alive_after", 64},
                   {"solved", true},
                   {"test_exact", 1.0}});
  steps.push_back({{"round", 3},
                   {"attempt", 0},
                   {"alive_before", 64},
                   {"alive_after", 51},
                   {"solved", false},
                   {"test_exact", 0.2}});
  put("lp/results.json",
      json{{"settings", {{"kind", "life_prune"}, {"n", 1}, {"m", 2}, {"score", "lamp"}}},
           {"dense", {{"test_exact", 1.0}}},
           {"searches", {{{"mode", "rewind"}, {"steps", steps}}}}}
          .dump());
  const Report r = collect_report({path("lp")});
  EXPECT_EQ(r.charts, std::vector<std::string>{"prune-0"});
  const json d = page_data(render_report_html(r));
  const json& ch = d["prune"][0];
  EXPECT_EQ(ch["model"], "life n=1 m=2 (accuracy: test boards entirely right)");
  EXPECT_DOUBLE_EQ(ch["dense"][0]["y"].get<double>(), 100.0);
  // The rounds it kept (80 and 64 of 100 weights), not the failed attempt.
  const json& pts = ch["series"][0]["points"];
  ASSERT_EQ(pts.size(), 2u);
  EXPECT_DOUBLE_EQ(pts[0]["x"].get<double>(), 80.0);
  EXPECT_DOUBLE_EQ(pts[1]["x"].get<double>(), 64.0);
  EXPECT_EQ(ch["series"][0]["label"], "life-prune lamp, rewind");
}

TEST_F(ReportTest, BadPathsGiveOneLineErrors) {
  put("notes.txt", "hello");
  fs::create_directories(dir_ / "empty" / "sub");
  auto one_line_error = [](const std::vector<std::string>& runs, const std::string& part) {
    try {
      collect_report(runs);
      ADD_FAILURE() << "no error for " << runs[0];
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(part), std::string::npos) << m;
      EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    }
  };
  one_line_error({path("nope")}, path("nope") + ": no such file or directory");
  one_line_error({path("notes.txt")}, "not a run directory, log.jsonl, results.json or .pare file");
  one_line_error({path("empty")}, "holds nothing pare wrote");
  one_line_error({}, "give at least one run directory");
  // A corrupt .pare file is named in the page's list, not fatal.
  put("bad.pare", "PARE but not really");
  const Report r = collect_report({path("bad.pare")});
  ASSERT_FALSE(r.missing.empty());
  EXPECT_NE(r.missing[0].find("bad.pare"), std::string::npos) << r.missing[0];
  // An unwritable output is an error too.
  EXPECT_THROW(write_report({path("bad.pare")}, path("no/such/dir/report.html")), Error);
}

}  // namespace
}  // namespace pare::experiments

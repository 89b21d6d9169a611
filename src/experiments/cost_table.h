// `pare cost RUN...` (issue #8, docs/cost.md): what runs cost, side by side
// with what they reached. A run directory of `pare train` or `pare prune`
// gives one row (its log's "end" event); a `pare ticket` directory gives the
// rows a lottery-ticket study is judged by: finding the ticket (the IMP
// rounds summed), training the final ticket from its rewound init (its last
// round alone), and the controls of that round.
#pragma once

#include <string>
#include <vector>

#include "pare/train/cost.h"

namespace pare::experiments {

struct CostRow {
  std::string label;   // "dense training", "finding the ticket (rounds 0-15)", ...
  std::string source;  // the path it came from
  double accuracy = -1;  // test accuracy; < 0: not recorded
  double density = -1;   // fraction of prunable weights kept; < 0: not recorded
  bool has_ledger = false;  // false: a run written before the ledger (FLOPs and seconds only)
  train::Cost cost;
};

// The rows of one run directory (or its results.json / log.jsonl). Raises
// Error naming the path when it holds no run pare recognises.
std::vector<CostRow> cost_rows(const std::string& path);

// A Markdown table of the rows, every energy figure labelled measured or
// estimated, and the methods under it.
std::string cost_table(const std::vector<CostRow>& rows);

}  // namespace pare::experiments

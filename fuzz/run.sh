#!/usr/bin/env bash
# Runs the libFuzzer targets of a PARE_FUZZ build, each for SECONDS (FUZZ_JOBS
# of them at a time), and prints per target the executions and what it found
# (docs/reliability.md, "Fuzzing"). Exits 1 when any target found something.
#
#   fuzz/run.sh BUILD_DIR SECONDS [TARGET...]      (make fuzz, make test-fuzz)
#
# Inputs each run adds to its corpus go to $FUZZ_WORK/<target>/ (default
# BUILD_DIR/fuzz-corpus, kept between runs so coverage accumulates); the seeds
# of fuzz/corpus/<target>/ are read, never written. A crashing input lands in
# $FUZZ_FINDINGS/<target>/ (default fuzz/findings, git-ignored) as
# crash-<sha1> (also leak-, timeout-, oom-); reproduce it with
#   BUILD_DIR/fuzz/fuzz_<target> fuzz/findings/<target>/crash-<sha1>
# Extra libFuzzer flags: FUZZ_FLAGS. FUZZ_JOBS: targets run at once (default:
# the cores; each libFuzzer process uses one).
set -u
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: fuzz/run.sh BUILD_DIR SECONDS [TARGET...]}
seconds=${2:?usage: fuzz/run.sh BUILD_DIR SECONDS [TARGET...]}
shift 2
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(idx csv npy pare_file safetensors onnx model_spec archive checkpoint run_config)
fi
work=${FUZZ_WORK:-$build/fuzz-corpus}
findings=${FUZZ_FINDINGS:-$here/findings}
logs=$build/fuzz-logs
mkdir -p "$logs"
# Stack traces for UndefinedBehaviorSanitizer reports too.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

# Runs one target; its exit status goes to $logs/<target>.rc.
fuzz_one() {
  local t=$1 bin=$build/fuzz/fuzz_$1 log=$logs/$1.log
  local dict=()
  [ -f "$here/dict/$t.dict" ] && dict=(-dict="$here/dict/$t.dict")
  # -rss_limit_mb / -malloc_limit_mb: a reader that allocates far more than
  # its input warrants is a finding (the readers check sizes before they
  # allocate); -timeout: one input may take at most 10 s.
  # shellcheck disable=SC2086
  "$bin" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    -malloc_limit_mb=1024 -artifact_prefix="$findings/$t/" "${dict[@]}" ${FUZZ_FLAGS:-} \
    "$work/$t" "$here/corpus/$t" >"$log" 2>&1
  echo $? >"$logs/$t.rc"
}

declare -A before
for t in "${targets[@]}"; do
  if [ ! -x "$build/fuzz/fuzz_$t" ]; then
    echo "fuzz/run.sh: $build/fuzz/fuzz_$t is missing (cmake -DPARE_FUZZ=ON, then build fuzz_all)" >&2
    exit 2
  fi
  mkdir -p "$work/$t" "$findings/$t"
  before[$t]=$(ls "$findings/$t" | wc -l)
done

# Each libFuzzer process uses one core: FUZZ_JOBS targets at a time (default:
# the cores), each still for SECONDS.
jobs_max=${FUZZ_JOBS:-$(nproc)}
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n; done
  fuzz_one "$t" &
done
wait

status=0
total=0
printf '%-12s %8s %12s %10s %8s  %s\n' target seconds executions exec/s findings log
for t in "${targets[@]}"; do
  log=$logs/$t.log
  rc=$(cat "$logs/$t.rc")
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  found=$(( $(ls "$findings/$t" | wc -l) - ${before[$t]} ))
  if [ "$rc" -ne 0 ] && [ "$found" -eq 0 ]; then found=1; fi  # a finding libFuzzer could not save
  [ "$found" -ne 0 ] && status=1
  total=$(( total + ${execs:-0} ))
  printf '%-12s %8s %12s %10s %8s  %s\n' "$t" "$seconds" "${execs:-?}" "${rate:-?}" "$found" "$log"
  if [ "$found" -ne 0 ]; then
    grep -m1 -E '==pare-fuzz==|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' "$log" | sed 's/^/    /'
    ls -t "$findings/$t" | head -"$found" | sed "s|^|    $findings/$t/|"
  fi
done
echo "total executions: $total"
exit $status

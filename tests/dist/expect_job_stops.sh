#!/bin/sh
# Runs an MPI job that must fail and stop by itself: passes when the command
# exits non-zero within $1 seconds and its output holds $2. A hang (timeout's
# exit code 124) or a zero exit fails.
limit=$1; pattern=$2; shift 2
out=$(timeout "$limit" "$@" 2>&1); rc=$?
printf '%s\n' "$out"
if [ "$rc" -eq 124 ]; then echo "FAIL: the job hung (killed after $limit s)"; exit 1; fi
if [ "$rc" -eq 0 ]; then echo "FAIL: the job exited 0"; exit 1; fi
if ! printf '%s\n' "$out" | grep -q -- "$pattern"; then echo "FAIL: no '$pattern' in the output"; exit 1; fi
echo "PASS: the job stopped with exit code $rc"

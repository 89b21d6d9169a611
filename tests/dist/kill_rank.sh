#!/bin/sh
# One rank of an MPI job that dies or freezes: run as `mpiexec -n K
# kill_rank.sh RANK SECONDS SIGNAL PROGRAM ARGS...`. Every rank runs PROGRAM;
# rank RANK gets SIGNAL (KILL: dies with no word from pare; STOP: freezes,
# alive but never again in a collective) SECONDS after it started.
victim=$1; after=$2; signal=$3; shift 3
if [ "${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-}}" = "$victim" ]; then
  (sleep "$after"; kill -s "$signal" $$) &
fi
exec "$@"

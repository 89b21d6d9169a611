#!/bin/sh
# One rank of an MPI job that dies: run as `mpiexec -n K kill_rank.sh RANK SECONDS
# PROGRAM ARGS...`. Every rank runs PROGRAM; rank RANK is killed with SIGKILL
# (no handler, no message from pare) SECONDS after it started.
victim=$1; after=$2; shift 2
if [ "${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-}}" = "$victim" ]; then
  (sleep "$after"; kill -9 $$) &
fi
exec "$@"

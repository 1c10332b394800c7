#!/usr/bin/env bash
# The reliability load runs of issue 10 (docs/reliability.md, "Load"): P5 (controller against a
# plain client driving the same status writes), P6 (deadline -> TIMEOUT delay, normal and right
# after a failover), the API shim under concurrent list/stat/get while jobs change, and the
# cancel races. Correctness failures (a job in the wrong state, a shim error, a race answer that
# disagrees) fail the run; timings are printed, never asserted.
#
#   hack/reliability.sh            reduced size (what hack/test.sh runs in CI; about 2-4 minutes)
#   RELIABILITY_FULL=1 hack/reliability.sh
#                                  full size: 10,000 jobs x 10 tasks (P5), 10,000 jobs in flight
#                                  (P6), race tests at 1,000; release build. Hours on 2 cores.
# Every size is an environment variable of benches/load.rs (LOAD_P5_JOBS, LOAD_TASKS,
# LOAD_P5_ROUNDS, LOAD_WORKERS, LOAD_P6_JOBS, LOAD_P6_TIMEOUTS, LOAD_P6_RATE, LOAD_P6_LEAD,
# LOAD_P6_FAILOVER_LEAD, LOAD_P6_TASKS, LOAD_SHIM_CLIENTS, LOAD_SHIM_SECONDS (per window),
# LOAD_SHIM_WINDOWS (per protocol), LOAD_SHIM_CONNECTIONS, LOAD_SHIM_KINDS, LOAD_SETTLE_MAX,
# LOAD_RESYNC) or of
# the race tests (RACE_JOBS);
# set ones win over both presets. Uses COST_ANALYSIS_CLUSTER_DIR if set (hack/test.sh sets it),
# otherwise starts and stops a control plane of its own.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

if [ "${RELIABILITY_FULL:-0}" = 1 ]; then
  profile=${LOAD_PROFILE:-bench}
  : "${LOAD_P5_JOBS:=10000}" "${LOAD_P6_JOBS:=10000}" "${LOAD_P6_TIMEOUTS:=1000}"
  : "${LOAD_SHIM_SECONDS:=30}" "${RACE_JOBS:=1000}"
else
  # The debug build hack/test.sh already made; sizes that finish in a few minutes.
  profile=${LOAD_PROFILE:-dev}
  : "${LOAD_P5_JOBS:=60}" "${LOAD_P5_ROUNDS:=2}" "${LOAD_P6_JOBS:=400}" "${LOAD_P6_TIMEOUTS:=60}"
  : "${LOAD_P6_RATE:=20}" "${LOAD_P6_LEAD:=15}" "${LOAD_SHIM_SECONDS:=5}" "${RACE_JOBS:=30}"
  # The suite's namespaces may still be being deleted: wait at most 10 s for a quiet control plane.
  : "${LOAD_SETTLE_MAX:=10}"
fi
export LOAD_P5_JOBS LOAD_P6_JOBS LOAD_P6_TIMEOUTS LOAD_SHIM_SECONDS RACE_JOBS
for v in LOAD_P5_ROUNDS LOAD_P6_RATE LOAD_P6_LEAD LOAD_SETTLE_MAX; do
  if [ -n "${!v:-}" ]; then export "${v?}"; fi
done

# Cargo's target directory, wherever CARGO_TARGET_DIR puts it (logs and the cluster go there).
target="${CARGO_TARGET_DIR:-$root/target}"
mkdir -p "$target"
own_cluster=""
if [ -z "${COST_ANALYSIS_CLUSTER_DIR:-}" ]; then
  own_cluster="$target/reliability-cluster"
  bash hack/cluster.sh down "$own_cluster" >/dev/null 2>&1 || true
  rm -rf "$own_cluster"
  bash hack/cluster.sh up "$own_cluster" >/dev/null
  trap 'bash hack/cluster.sh down "$own_cluster" >/dev/null 2>&1 || true' EXIT
  export COST_ANALYSIS_CLUSTER_DIR="$own_cluster"
fi

start=$(date +%s)
status=0
echo "==> load: P5, P6, shim under load (profile $profile)"
cargo bench --quiet --profile "$profile" --bench load || status=1
echo "==> cancel races at RACE_JOBS=$RACE_JOBS"
log="$target/reliability-races.log"
set +e
cargo test --quiet --test cancel -- racing --nocapture --test-threads 1 >"$log" 2>&1
rc=$?
set -e
grep -E 'cancel against|test result|panicked|FAILED' "$log" || true
[ "$rc" = 0 ] || { status=1; echo "race tests failed (log: $log)" >&2; }
echo "reliability runs took $(( $(date +%s) - start ))s; $([ $status = 0 ] && echo passed || echo FAILED)"
exit "$status"

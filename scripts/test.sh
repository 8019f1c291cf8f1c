#!/usr/bin/env bash
# Runs onestor's whole test suite (unit tests, and lab tests when run as root) and ends with the
# line "N passed, N failed". Installs what it needs first.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
export NO_COLOR=1 DENO_NO_UPDATE_CHECK=1
# Actions run by the unit tests record metrics: into a scratch store, not the machine's front-end state.
metrics_dir=$(mktemp -d)
export ONESTOR_METRICS_DIR="$metrics_dir"
log=$(mktemp)
node_modules/.bin/deno test -A --no-check "$@" tests/ 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
summary=$(grep -E '^(ok|FAILED) \| [0-9]+ passed' "$log" | tail -n 1)
passed=$(sed -nE 's/.* ([0-9]+) passed.*/\1/p' <<<"$summary")
failed=$(sed -nE 's/.* ([0-9]+) failed.*/\1/p' <<<"$summary")
ignored=$(sed -nE 's/.* ([0-9]+) ignored.*/\1/p' <<<"$summary")
rm -rf "$log" "$metrics_dir"
if [ -z "$passed" ]; then
  echo "0 passed, 1 failed"
  exit 1
fi
echo "${passed} passed, ${failed:-0} failed${ignored:+, ${ignored} skipped}"
exit "$status"

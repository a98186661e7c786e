#!/usr/bin/env bash
# The power-cut soak both benches/powercut.sh and benches/fetchcut.sh run: the VM test
# tests/TEST.rs itself (same checks, through tests/common/cutloop.rs) with CUTS cuts instead of
# CI's 20, then a one-line summary. Exits non-zero on any failed check. Not a timing benchmark:
# the number that matters is failures = 0.
#
# Usage: benches/cutsoak.sh TEST WHAT [CUTS [SEED]]   (default 100 cuts; builds the static binary)
set -euo pipefail
test=$1 what=$2
cuts=${3:-100} seed=${4:-$RANDOM}
here=$(cd "$(dirname "$0")/.." && pwd)
export PRISTINE_STATIC_BIN=${PRISTINE_STATIC_BIN:-$("$here/scripts/build-static" 2>/dev/null)}
start=$(date +%s)
status=0
PRISTINE_POWERCUTS=$cuts PRISTINE_POWERCUT_SEED=$seed \
  cargo test --release --manifest-path "$here/Cargo.toml" --test "$test" -- --nocapture || status=$?
secs=$(( $(date +%s) - start ))
echo "seed $seed: $cuts cuts of $what asked for, ${secs}s, $([[ $status == 0 ]] && echo 'every check passed' || echo 'a check FAILED')"
exit $status

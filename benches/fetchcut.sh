#!/usr/bin/env bash
# Power-cut soak of `pristine update fetch`: tests/vm/fetchcut.sh with many more cuts than CI
# runs, each at a random point of a fetch over a pending slot; every boot after a cut must find
# slot A's bytes unchanged, a readable state, slot B pending or good only with that version's
# bytes, and finish the interrupted fetch. It runs tests/vm_fetchcut.rs itself (same checks,
# through tests/common/cutloop.rs) with more cuts, prints the cut lines and a summary, and exits
# non-zero on any failed check. Not a timing benchmark: the number that matters is failures = 0.
#
# Usage: benches/fetchcut.sh [CUTS [SEED]]   (default 100 cuts; builds the static binary)
set -euo pipefail
cuts=${1:-100} seed=${2:-$RANDOM}
here=$(cd "$(dirname "$0")/.." && pwd)
export PRISTINE_STATIC_BIN=${PRISTINE_STATIC_BIN:-$("$here/scripts/build-static" 2>/dev/null)}
start=$(date +%s)
status=0
PRISTINE_POWERCUTS=$cuts PRISTINE_POWERCUT_SEED=$seed \
  cargo test --release --manifest-path "$here/Cargo.toml" --test vm_fetchcut -- --nocapture || status=$?
secs=$(( $(date +%s) - start ))
echo "seed $seed: $cuts cuts of a fetch asked for, ${secs}s, $([[ $status == 0 ]] && echo 'every check passed' || echo 'a check FAILED')"
exit $status

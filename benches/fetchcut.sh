#!/usr/bin/env bash
# Power-cut soak of `pristine update fetch`: tests/vm/fetchcut.sh with many more cuts than CI
# runs, each at a random point of a fetch over a pending slot; every boot after a cut must find
# slot A's bytes unchanged, a readable state, slot B pending or good only with that version's
# bytes, and finish the interrupted fetch. It runs tests/vm_fetchcut.rs itself (same checks,
# through tests/common/cutloop.rs) with more cuts, prints the cut lines and a summary, and exits
# non-zero on any failed check. Not a timing benchmark: the number that matters is failures = 0.
#
# Usage: benches/fetchcut.sh [CUTS [SEED]]   (default 100 cuts; builds the static binary)
exec "$(dirname "$0")/cutsoak.sh" vm_fetchcut "a fetch" "$@"

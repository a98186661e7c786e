#!/usr/bin/env bash
# Power-cut soak: tests/vm/powercut.sh with many more cuts than CI runs, each at a random point
# of `pristine provision` with a factory reset requested; every boot after a cut must converge
# with the keep-list intact. It runs tests/vm_powercut.rs itself (same checks, through
# tests/common/cutloop.rs) with more cuts, prints the cut lines and a summary, and exits non-zero
# on any failed check. Not a timing benchmark: the number that matters is failures = 0.
#
# Usage: benches/powercut.sh [CUTS [SEED]]   (default 100 cuts; builds the static binary)
exec "$(dirname "$0")/cutsoak.sh" vm_powercut "pristine" "$@"

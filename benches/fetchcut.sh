#!/usr/bin/env bash
# Power-cut soak of `pristine update fetch`: tests/vm/fetchcut.sh with many more cuts than CI
# runs (tests/vm_fetchcut.rs), each at a random point of a fetch over a pending slot; every boot
# after a cut must find slot A's bytes unchanged, a readable state, slot B pending or good only
# with that version's bytes, and finish the interrupted fetch. Prints the cut lines, a summary
# and exits non-zero on any failed check. Not a timing benchmark: the number that matters is
# failures = 0.
#
# Usage: benches/fetchcut.sh [CUTS [SEED]]   (default 100 cuts; builds the static binary)
set -euo pipefail
cuts=${1:-100} seed=${2:-$RANDOM}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${PRISTINE_STATIC_BIN:-$("$here/scripts/build-static" 2>/dev/null)}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
start=$(date +%s)
"$here/tests/vm/fetchcut.sh" "$bin" "$out" "$cuts" "$seed" | tee "$out/summary"
fail=0 checks=0
while read -r _ n log _; do
  log=${log#log=}
  checks=$((checks + 1))
  if ! grep -aq "PRISTINE-CUT: run 1 exit code 0 " "$log" \
    || [[ $(grep -ac "PRISTINE-CUT-CHECK [a-z-]* ok" "$log") != 6 ]] \
    || grep -aq "PRISTINE-CUT-CHECK [a-z-]* BAD" "$log"; then
    echo "FAILED check after boot $n: $log" >&2
    fail=$((fail + 1))
    cp "$log" "/tmp/pristine-fetchcut-failed-boot$n.log"
  fi
done < <(grep '^CHECK ' "$out/summary")
interrupted=$(grep -c '^CUT .*interrupted=yes' "$out/summary" || true)
secs=$(( $(date +%s) - start ))
echo "seed $seed: $interrupted cuts interrupted a fetch, $checks checks, $fail failed, ${secs}s ($(( secs / (checks > 0 ? checks : 1) ))s per boot)"
exit $(( fail > 0 ))

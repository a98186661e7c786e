#!/usr/bin/env bash
# Power-cut soak: tests/vm/powercut.sh with many cuts (CI runs 20 in tests/vm_boot.rs). Each cut
# is one boot of the example appliance under qemu (TCG), killed a random time into a provisioning
# with a factory reset; every next boot must converge with the keep-list intact.
# Usage: benches/powercut.sh [CUTS [SEED]]   (default 200 cuts; prints the seed to repeat a run)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$("$here/scripts/build-static" 2>/dev/null)
out=$(mktemp -d /tmp/pristine-bench-powercut.XXXXXX)
trap 'rm -rf "$out"' EXIT
"$here/tests/vm/powercut.sh" "$bin" "$out" "${1:-200}" ${2:+"$2"}

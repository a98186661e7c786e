#!/usr/bin/env bash
# Benchmark: the cost of dm-verity and of the first-boot check, pristine vs veritysetup, side by
# side on the same image.
#
# A SIZE_MIB image of random data (default 1024):
#   tree:   `veritysetup format --hash-offset=SIZE` (on a copy) vs `pristine update make
#           --verity` (which also chunks and compresses the image; its chunking alone is
#           measured too, without --verity, so the difference is the tree)
#   check:  `veritysetup verify` vs `pristine update boot` of the fetched, pending slot
#           (the first-boot check: the whole tree recomputed and compared with the signed root
#           hash; a later boot skips it)
# Reported: wall and CPU milliseconds (benches/timed.py), peak RSS of pristine's boot.
# The mapping itself (device-mapper ioctls at boot) is not measured here: it needs dm_mod, and
# is exercised in tests/vm_update.rs.
# Usage: benches/update-boot.sh [SIZE_MIB]   ($PRISTINE_BIN: use that binary instead of building)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
size_mib=${1:-1024}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$here/target}
if [[ -n ${PRISTINE_BIN:-} ]]; then
  bin=$PRISTINE_BIN
else
  (cd "$here" && cargo build --release --quiet)
  bin=$CARGO_TARGET_DIR/release/pristine
fi
w=$(mktemp -d /tmp/pristine-bench-update-boot.XXXXXX)
trap 'rm -rf "$w"' EXIT
t() { python3 "$here/benches/timed.py" "$@"; }

head -c $((size_mib * 1024 * 1024)) /dev/urandom > "$w/img"
minisign -G -W -p "$w/k.pub" -s "$w/k.key" < /dev/null > /dev/null
size=$(stat -c %s "$w/img")
cp "$w/img" "$w/vs.img"
sync
echo "tree of $size_mib MiB (wall_ms cpu_ms):"
echo "  veritysetup format:              $(t /usr/sbin/veritysetup format --hash-offset="$size" "$w/vs.img" "$w/vs.img")"
echo "  pristine update make (no tree):  $(t "$bin" update make --key="$w/k.key" --version=1 "$w/img" "$w/plain")"
echo "  pristine update make --verity:   $(t "$bin" update make --verity --key="$w/k.key" --version=2 "$w/img" "$w/out")"

# A device root with both slots as files, version 1 adopted, version 2 fetched (pending).
r=$w/root
mkdir -p "$r/usr/lib/pristine/keys" "$r/slots"
cp "$w/k.pub" "$r/usr/lib/pristine/keys/"
printf '[update]\nslots = ["/slots/a", "/slots/b"]\n' > "$r/usr/lib/pristine/pristine.toml"
cp "$w/img" "$r/slots/a"; : > "$r/slots/b"
"$bin" --root="$r" update adopt --slot=0 --version=1 --index="$w/plain/image.caibx"
"$bin" --root="$r" update fetch "$w/out" 2> /dev/null
rh=$(sed -n 's/^root-hash = "\(.*\)"/\1/p' "$w/out/manifest.toml")
sync
echo "first-boot check of $size_mib MiB (wall_ms cpu_ms), warm page cache:"
echo "  veritysetup verify:              $(t /usr/sbin/veritysetup verify --hash-offset="$size" "$r/slots/b" "$r/slots/b" "$rh")"
cp "$r/var/lib/pristine/update/update.json" "$w/state.json"
echo "  pristine update boot:            $(t "$bin" --root="$r" update boot)"
cp "$w/state.json" "$r/var/lib/pristine/update/update.json"
rss=$(/usr/bin/time -f %M "$bin" --root="$r" update boot 2>&1 >/dev/null | tail -n1)
echo "  pristine update boot peak RSS:   $((rss / 1024)) MiB"
echo "  pristine update boot (checked):  $(t "$bin" --root="$r" update boot)"

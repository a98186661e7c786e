#!/usr/bin/env bash
# Benchmark: `pristine factory` and `pristine lint` on a copy of this machine's root (/etc,
# /usr/lib/{systemd,sysusers.d,tmpfiles.d}, /var/lib/{dpkg,systemd,dbus}, /var/spool). No
# other tool converts an image, so there is no reference column: the numbers are the cost of
# a conversion (a fresh copy each run; only pristine is timed) and of a lint of the result.
# Prints medians of RUNS runs (wall and CPU, ms) and the peak RSS of one run of each.
#
# Usage: benches/factory.sh [RUNS]   (default 9; builds the release binary if missing; needs root)
set -euo pipefail
RUNS=${1:-9}
here=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$here/target}
PRISTINE=$target/release/pristine
[ -x "$PRISTINE" ] || (cd "$here" && cargo build --release --bin pristine >&2)
work=$(mktemp -d /dev/shm/pristine-bench-XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$work"' EXIT

src=$work/src
mkdir -p "$src/usr/lib" "$src/var/lib"
cp -a /etc "$src/"
for d in systemd sysusers.d tmpfiles.d os-release; do
  [ -e "/usr/lib/$d" ] && cp -a "/usr/lib/$d" "$src/usr/lib/"
done
for d in dpkg systemd dbus; do [ -e "/var/lib/$d" ] && cp -a "/var/lib/$d" "$src/var/lib/"; done
[ -e /var/spool ] && cp -a /var/spool "$src/var/"
ln -s usr/lib "$src/lib"
echo "corpus: $(find "$src/etc" | wc -l) entries in /etc, $(find "$src/var" | wc -l) in /var"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
rss() { python3 -c 'import resource,subprocess,sys; subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$@"; }
walls=() cpus=() lwalls=() lcpus=()
for i in $(seq "$RUNS"); do
  rm -rf "$work/r"; cp -a "$src" "$work/r"
  read -r w c < <(python3 "$here/benches/timed.py" "$PRISTINE" --root="$work/r" --log-level=error factory)
  walls+=("$w"); cpus+=("$c")
  read -r w c < <(python3 "$here/benches/timed.py" "$PRISTINE" --root="$work/r" lint)
  lwalls+=("$w"); lcpus+=("$c")
done
rm -rf "$work/r"; cp -a "$src" "$work/r"
frss=$(rss "$PRISTINE" --root="$work/r" --log-level=error factory)
lrss=$(rss "$PRISTINE" --root="$work/r" lint)
printf '%-26s %10s %10s %12s\n' "" "wall ms" "cpu ms" "peak RSS KiB"
printf '%-26s %10s %10s %12s\n' "pristine factory" "$(printf '%s\n' "${walls[@]}" | median)" "$(printf '%s\n' "${cpus[@]}" | median)" "$frss"
printf '%-26s %10s %10s %12s\n' "pristine lint (result)" "$(printf '%s\n' "${lwalls[@]}" | median)" "$(printf '%s\n' "${lcpus[@]}" | median)" "$lrss"

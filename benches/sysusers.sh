#!/usr/bin/env bash
# Benchmark: pristine sysusers vs the reference systemd-sysusers 257 on the same trees.
#   benches/sysusers.sh [RUNS]      (default 20 runs per tool and tree)
# Trees: this machine's /usr/lib/sysusers.d into an empty root, and a synthetic config of
# 2000 lines (1 r, 699 g, 900 u, 400 m) into a root with only root in /etc/passwd. Each run starts
# from a fresh copy of the tree (copy time not measured). Prints mean wall time per run and the
# peak RSS of the last run, side by side. Not a test: nothing is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
pristine=$(scripts/build-static 2>/dev/null)
ref="$(../shared/reference/systemd)/systemd-sysusers"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export SOURCE_DATE_EPOCH=1700000000

mkdir -p "$work/host/usr/lib/sysusers.d"
cp /usr/lib/sysusers.d/*.conf "$work/host/usr/lib/sysusers.d/"
mkdir -p "$work/big/usr/lib/sysusers.d" "$work/big/etc"
echo "root:x:0:0:root:/root:/bin/bash" > "$work/big/etc/passwd"
{
  echo "r - 1-4000"
  for k in $(seq 0 698); do echo "g grp$k -"; done
  for k in $(seq 0 899); do echo "u usr$k - \"User $k\" /var/lib/usr$k"; done
  for k in $(seq 0 399); do echo "m usr$((k % 900)) grp$((k % 700))"; done
} > "$work/big/usr/lib/sysusers.d/big.conf"

# measure TREE CMD... -> prints "mean_ms rss_kb"
measure() {
  local tree=$1; shift
  local total=0 t0 t1 rss=0
  for _ in $(seq "$runs"); do
    rm -rf "$work/run"; cp -a "$work/$tree" "$work/run"
    t0=$(date +%s%N)
    "$@" --root="$work/run" >/dev/null 2>&1 || true
    t1=$(date +%s%N)
    total=$((total + t1 - t0))
  done
  if [[ -x /usr/bin/time ]]; then
    rm -rf "$work/run"; cp -a "$work/$tree" "$work/run"
    /usr/bin/time -f %M -o "$work/rss" "$@" --root="$work/run" >/dev/null 2>&1 || true
    rss=$(tail -n1 "$work/rss")
  fi
  echo "$(awk -v t="$total" -v n="$runs" 'BEGIN { printf "%.2f", t / n / 1e6 }') $rss"
}

printf '%-34s %14s %14s %12s %12s\n' tree "pristine ms" "systemd ms" "pristine KiB" "systemd KiB"
for tree in host big; do
  read -r pm pr < <(measure "$tree" "$pristine" sysusers)
  read -r sm sr < <(measure "$tree" "$ref")
  name=$([[ $tree == host ]] && echo "/usr/lib/sysusers.d (empty root)" || echo "synthetic 2000 lines")
  printf '%-34s %14s %14s %12s %12s\n' "$name" "$pm" "$sm" "${pr:-?}" "${sr:-?}"
done

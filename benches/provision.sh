#!/bin/bash
# Benchmark: the whole pipeline, `pristine provision`, against the four reference systemd 257
# commands that do the same (systemd-machine-id-setup --root, systemd-sysusers --root,
# systemd-tmpfiles --root --create --boot, systemctl --root preset-all), on this machine's /usr
# (bind-mounted read-only) with empty /etc and /var. Wall-clock medians of N runs (emptying
# /etc and /var between runs is not timed). Needs root. Usage: benches/provision.sh [N]
set -euo pipefail
N=${1:-10}
HERE=$(cd "$(dirname "$0")/.." && pwd)
REFBIN=$(bash "$HERE/../shared/reference/systemd" | tail -n1)
OURS=$("$HERE/scripts/build-static" 2>/dev/null)
WORK=$(mktemp -d /tmp/pristine-bench-provision.XXXXXX)
mkdir -p "$WORK"/r/{etc,var,usr,run,tmp}
for l in bin sbin lib lib64; do ln -s "usr/$l" "$WORK/r/$l"; done
mount --bind -o ro /usr "$WORK/r/usr"
trap 'umount "$WORK/r/usr"; rm -rf "$WORK"' EXIT
R=$WORK/r

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.1f", m}'; }
empty() { find "$R/etc" "$R/var" -mindepth 1 -delete; }
reference() {
  "$REFBIN/systemd-machine-id-setup" --root="$R"
  "$REFBIN/systemd-sysusers" --root="$R"
  "$REFBIN/systemd-tmpfiles" --root="$R" --create --boot || true
  "$REFBIN/systemctl" --root="$R" preset-all
}
ours() { "$OURS" --root="$R" --cmdline= provision || true; }

# Prints "wall_ms cpu_ms" (cpu = user + system of the command and its children).
measure() { # $1 = function, $2 = empty first (1/0)
  local TIMEFORMAT='%R %U %S' t
  [[ $2 == 1 ]] && { empty; sync; }
  t=$( { time $1 >/dev/null 2>&1; } 2>&1 )
  awk '{printf "%.3f %.3f\n", $1*1000, ($2+$3)*1000}' <<<"$t"
}
series() { # $1 = function, $2 = empty first
  local out; out=$(for _ in $(seq "$N"); do measure "$1" "$2"; done)
  echo "$(cut -d' ' -f1 <<<"$out" | median) $(cut -d' ' -f2 <<<"$out" | median)"
}
read -r ref_wall ref_cpu < <(series reference 1)
read -r our_wall our_cpu < <(series ours 1)
empty; ours >/dev/null 2>&1
read -r noop_wall noop_cpu < <(series ours 0)
# Where pristine's time goes (one more run, from its report).
empty; "$OURS" --root="$R" --cmdline= provision --report="$WORK/report.json" >/dev/null 2>&1 || true
steps=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(', '.join(f\"{s['name']} {s['duration_us']/1000:.1f}\" for s in d['steps'] if s['ran']))" "$WORK/report.json")
units=$(ls /usr/lib/systemd/system | wc -l)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1fx", a/b}'; }
printf '\nWhole pipeline on this machine'"'"'s /usr (%s units), empty /etc and /var, median of %s runs (load %s)\n\n' "$units" "$N" "$(cut -d' ' -f1 /proc/loadavg)"
printf '| %-34s | %21s | %21s | %15s |\n' "case" "systemd 257 wall/cpu" "pristine wall/cpu" "speed-up w/c"
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..36})" "$(printf -- '-%.0s' {1..23})" "$(printf -- '-%.0s' {1..23})" "$(printf -- '-%.0s' {1..17})"
printf '| %-34s | %8s / %7s ms | %8s / %7s ms | %6s / %6s |\n' "provision (4 commands vs 1)" "$ref_wall" "$ref_cpu" "$our_wall" "$our_cpu" "$(ratio "$ref_wall" "$our_wall")" "$(ratio "$ref_cpu" "$our_cpu")"
printf '| %-34s | %21s | %8s / %7s ms | %15s |\n' "second run, nothing to do" "-" "$noop_wall" "$noop_cpu" "-"
printf '\npristine steps (ms): %s\n' "$steps"

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

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.1f", m/1e6}'; }
empty() { find "$R/etc" "$R/var" -mindepth 1 -delete; }
reference() {
  "$REFBIN/systemd-machine-id-setup" --root="$R"
  "$REFBIN/systemd-sysusers" --root="$R"
  "$REFBIN/systemd-tmpfiles" --root="$R" --create --boot || true
  "$REFBIN/systemctl" --root="$R" preset-all
}
ours() { "$OURS" --root="$R" --cmdline= provision || true; }

time_it() { # $1 = function
  for _ in $(seq "$N"); do empty; sync; s=$(now); $1 >/dev/null 2>&1; e=$(now); echo $((e - s)); done | median
}
t_ref=$(time_it reference)
t_ours=$(time_it ours)
# The second boot: everything provisioned, nothing to do.
empty; ours >/dev/null 2>&1
t_noop=$(for _ in $(seq "$N"); do s=$(now); ours >/dev/null 2>&1; e=$(now); echo $((e - s)); done | median)
units=$(ls /usr/lib/systemd/system | wc -l)
printf '\nWhole pipeline on this machine'"'"'s /usr (%s units), empty /etc and /var, median of %s runs\n\n' "$units" "$N"
printf '| %-44s | %12s | %12s | %8s |\n' "case" "systemd 257" "pristine" "speed-up"
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..10})"
printf '| %-44s | %9s ms | %9s ms | %7.1fx |\n' "provision (machine-id, users, tmpfiles, presets)" "$t_ref" "$t_ours" "$(awk -v a="$t_ref" -v b="$t_ours" 'BEGIN{print a/b}')"
printf '| %-44s | %12s | %9s ms | %8s |\n' "second run, nothing to do" "-" "$t_noop" "-"

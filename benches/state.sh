#!/bin/bash
# Benchmark: what the state operators' restore adds to `pristine provision`. A small image whose
# registry holds 200 stashed files (in 10 directories) and 20 parsed values (hostname, time zone,
# 18 keys of /etc/locale.conf and /etc/machine-info) is provisioned from an empty /etc, with
# and without its state.d rules; the difference of the medians is the cost of restore. The
# "state" step's own duration from the JSON report is printed too. Two targets for /etc: a
# directory on the root file system (restore stages a copy and swaps it in, with one syncfs),
# and a tmpfs mounted on /etc (rendered in place), when run as root.
# There is no reference tool to compare with: systemd has no state operators.
# Usage: benches/state.sh [N]
set -euo pipefail
N=${1:-20}
HERE=$(cd "$(dirname "$0")/.." && pwd)
OURS=$("$HERE/scripts/build-static" 2>/dev/null)
WORK=$(mktemp -d /tmp/pristine-bench-state.XXXXXX)
R=$WORK/r
cleanup() { umount "$R/etc" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", m}'; }
minimum() { sort -n | head -1 | awk '{printf "%.2f", $1}'; }

mkdir -p "$R"/{etc,var,persist} "$R/usr/lib/pristine/state.d" "$R/usr/share/zoneinfo/Europe"
echo "ID=bench" > "$R/usr/lib/os-release"
echo TZif > "$R/usr/share/zoneinfo/Europe/Berlin"
printf '[state]\nregistry = "/persist/state"\n' > "$R/usr/lib/pristine/10.toml"
RULES=$WORK/rules.toml
cat > "$RULES" <<'TOML'
[[rule]]
path = "/etc/hostname"
kind = "parsed"
[[rule]]
path = "/etc/localtime"
kind = "parsed"
[[rule]]
path = "/etc/locale.conf"
kind = "parsed"
[[rule]]
path = "/etc/machine-info"
kind = "parsed"
[[rule]]
path = "/etc/app"
kind = "stash"
TOML
cp "$RULES" "$R/usr/lib/pristine/state.d/10.toml"
echo bench-host > "$R/etc/hostname"
ln -s ../usr/share/zoneinfo/Europe/Berlin "$R/etc/localtime"
for i in $(seq 9); do echo "LC_VAR$i=de_DE.UTF-8"; done > "$R/etc/locale.conf"
for i in $(seq 9); do echo "KEY$i=value-$i"; done > "$R/etc/machine-info"
for d in $(seq 10); do
  mkdir -p "$R/etc/app/d$d"
  for f in $(seq 20); do head -c 2048 /dev/urandom | base64 > "$R/etc/app/d$d/f$f.conf"; done
done
"$OURS" --root="$R" --cmdline= state save
read -r files packed values < <(python3 -c 'import json,sys; g=json.load(open(sys.argv[1])); print(sum(e["type"]=="file" for e in g["entries"]), len((g.get("pack") or {}).get("index",{})), sum(len(e.get("values",{})) for e in g["entries"]))' "$R/persist/state/generation.json")
echo "registry: $files stashed files ($packed objects in the pack), $values parsed values"

run() { # $1 = with|without, $2 = dir|tmpfs; prints "wall_ms state_step_ms"
  if [[ $1 == with ]]; then cp "$RULES" "$R/usr/lib/pristine/state.d/10.toml"; else rm -f "$R/usr/lib/pristine/state.d/10.toml"; fi
  if [[ $2 == tmpfs ]]; then umount "$R/etc" 2>/dev/null || true; rm -rf "$R/etc"; mkdir "$R/etc"; mount -t tmpfs tmpfs "$R/etc"
  else umount "$R/etc" 2>/dev/null || true; rm -rf "$R/etc" "$R/.pristine-etc.new"; mkdir "$R/etc"; fi
  rm -rf "$R/var"; mkdir "$R/var"; sync
  local wall
  wall=$(python3 "$HERE/benches/timed.py" "$OURS" --root="$R" --cmdline= provision --report="$WORK/report.json" | cut -d' ' -f1)
  local step
  step=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(sum(s["duration_us"] for s in r["steps"] if s["name"].startswith("state"))/1000)' "$WORK/report.json")
  echo "$wall $step"
}

targets=(dir)
[[ $(id -u) == 0 ]] && targets+=(tmpfs)
printf '%-6s %-14s %-16s %-12s %s\n' target "without (ms)" "with (ms)" "added (ms)" "state steps (ms), median / min"
for tgt in "${targets[@]}"; do
  without=$(for _ in $(seq "$N"); do run without "$tgt"; done | cut -d' ' -f1 | median)
  out=$(for _ in $(seq "$N"); do run with "$tgt"; done)
  with=$(cut -d' ' -f1 <<<"$out" | median)
  step=$(cut -d' ' -f2 <<<"$out" | median)
  stepmin=$(cut -d' ' -f2 <<<"$out" | minimum)
  added=$(awk -v a="$with" -v b="$without" 'BEGIN{printf "%.2f", a-b}')
  printf '%-6s %-14s %-16s %-12s %s / %s\n' "$tgt" "$without" "$with" "$added" "$step" "$stepmin"
done

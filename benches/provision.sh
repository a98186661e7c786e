#!/bin/bash
# Benchmark: the whole pipeline, `pristine provision`, against the four reference systemd 257
# commands that do the same (systemd-machine-id-setup --root, systemd-sysusers --root,
# systemd-tmpfiles --root --create --boot, systemctl --root preset-all), on this machine's /usr
# (bind-mounted read-only) with empty /etc and /var. Medians of N runs of wall time and CPU time
# (user + system, from wait4; benches/timed.py), emptying /etc, /var, /run and /tmp between runs
# untimed (a first boot starts with an empty /run). The runs of systemd, pristine and the floor
# alternate (one of each per round), so that drift in the machine's speed moves all three alike.
# Each side ends with one syncfs of the target inside its time (equal durability: an offline
# `provision` does not sync, systemd-sysusers and systemd-machine-id-setup fsync some files).
#
# The floor: one more `provision` writes its mutation trace (PRISTINE_TRACE_MUTATIONS), and
# `replay` (examples/replay.rs) applies exactly those calls, in that order, to the emptied tree,
# followed by the same syncfs: what any tool making these changes pays on this file system.
# With strace installed, the calls of one run are also taken from strace (benches/strace-trace.py)
# and replayed instead when they are more than the trace holds (a mutation that bypasses src/fs
# is missing from the trace; both counts are printed).
#
# Two targets for /etc and /var:
# - a fresh journalled ext4 on a loop device, as a real root file system is. Both sides pay
#   for durability there: systemd-sysusers and systemd-machine-id-setup fsync what they write
#   (five journal commits), pristine makes everything durable with one syncfs before its
#   record. This machine's own disk is not used: it is an ext4 without a journal, where
#   creating inodes within minutes of deleting thousands (every run of a benchmark loop)
#   makes the kernel scan past each recently deleted inode, a cost of the loop, not of a
#   first boot. Between runs the previous /etc and /var are renamed into a graveyard.
# - tmpfs, the stateless mode (`pristine.mode=stateless`): no disk at all.
# Without loop devices the first target falls back to a directory under /tmp and says so.
# Needs root. Usage: benches/provision.sh [N]
set -euo pipefail
N=${1:-10}
HERE=$(cd "$(dirname "$0")/.." && pwd)
REFBIN=$(bash "$HERE/../shared/reference/systemd" | tail -n1)
OURS=$("$HERE/scripts/build-static" 2>/dev/null)
# The replay is built for the same target as pristine (musl where installed), so that the floor
# pays the same process start-up as the binary it is compared with.
REPLAY=$(cd "$HERE" && cargo build --release --locked --target "$(scripts/target 2>/dev/null)" --example replay --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "replay" and m.get("executable"):
        print(m["executable"])')
WORK=$(mktemp -d /tmp/pristine-bench-provision.XXXXXX)
R=$WORK/r
LOOP=
cleanup() {
  umount "$R/usr" 2>/dev/null || true
  umount "$R" 2>/dev/null || true
  [[ -n $LOOP ]] && losetup -d "$LOOP"
  rm -rf "$WORK"
}
trap cleanup EXIT

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.1f", m}'; }
empty() {
  local g; g=$(mktemp -d "$R/graveyard/XXXXXX")
  mv "$R/etc" "$R/var" "$R/run" "$R/tmp" "$g/" && mkdir "$R/etc" "$R/var" "$R/run" "$R/tmp"
}
reference=(
  "$REFBIN/systemd-machine-id-setup" --root="$R" ";"
  "$REFBIN/systemd-sysusers" --root="$R" ";"
  "$REFBIN/systemd-tmpfiles" --root="$R" --create --boot ";"
  "$REFBIN/systemctl" --root="$R" preset-all
)
ours=("$OURS" --root="$R" --cmdline= provision)
floor=("$REPLAY" "$WORK/trace")

# Prints "wall_ms cpu_ms" (cpu = user + system of the commands, from wait4).
measure() { # $1 = name of the command array, $2 = empty first (1/0)
  local -n cmd=$1
  [[ $2 == 1 ]] && { empty; sync; }
  python3 "$HERE/benches/timed.py" --syncfs "$R" "${cmd[@]}"
}
series() { # $1 = name of the command array, $2 = empty first
  local out; out=$(for _ in $(seq "$N"); do measure "$1" "$2"; done)
  medians "$out"
}
medians() { # $1 = lines of "wall cpu"
  local v; v=$(grep . <<<"$1")
  echo "$(cut -d' ' -f1 <<<"$v" | median) $(cut -d' ' -f2 <<<"$v" | median)"
}
# N rounds of systemd, pristine and the floor, one of each per round, so that a machine whose
# speed drifts during the bench moves all three alike; sets REF, OURS_OUT and FLOOR_OUT.
rounds() {
  REF=; OURS_OUT=; FLOOR_OUT=
  for _ in $(seq "$N"); do
    REF+="$(measure reference 1)"$'\n'
    OURS_OUT+="$(measure ours 1)"$'\n'
    FLOOR_OUT+="$(measure floor 1)"$'\n'
  done
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1fx", a/b}'; }

# Mounts the target ($1: ext4 or tmpfs) on $R with the /usr bind mount; sets NAME.
setup() {
  mkdir -p "$R"
  case $1 in
    ext4)
      truncate -s 2G "$WORK/fs.img"
      if mkfs.ext4 -q -F "$WORK/fs.img" 2>/dev/null \
        && LOOP=$(losetup -f --show "$WORK/fs.img" 2>/dev/null) && mount "$LOOP" "$R"; then
        NAME="journalled ext4"
      else
        [[ -n $LOOP ]] && losetup -d "$LOOP"
        LOOP=
        NAME="/tmp (no loop device)"
      fi
      ;;
    tmpfs)
      mount -t tmpfs -o mode=0755 tmpfs "$R"
      NAME="tmpfs (stateless)"
      ;;
  esac
  mkdir -p "$R"/{etc,var,usr,run,tmp} "$R/graveyard"
  for l in bin sbin lib lib64; do ln -s "usr/$l" "$R/$l"; done
  mount --bind -o ro /usr "$R/usr"
}
teardown() {
  umount "$R/usr"
  if mountpoint -q "$R"; then umount "$R"; fi
  if [[ -n $LOOP ]]; then losetup -d "$LOOP"; LOOP=; fi
  rm -rf "$R" "$WORK/fs.img"
}

rows=()
for target in ext4 tmpfs; do
  setup "$target"
  name=$NAME
  empty; rm -f "$WORK/trace"
  PRISTINE_TRACE_MUTATIONS=$WORK/trace "${ours[@]}" >/dev/null 2>&1 || true
  ops=$(wc -l <"$WORK/trace")
  floor=("$REPLAY" "$WORK/trace")
  floor_ops="$ops ops"
  if command -v strace >/dev/null; then
    empty
    strace -f -qq -y -e status=successful -o "$WORK/strace" \
      -e trace=mkdirat,symlinkat,renameat,renameat2,unlinkat,fchmod,fchmodat,fchown,fchownat,mknodat,ftruncate,fsetxattr,openat,openat2,write,fsync \
      "${ours[@]}" >/dev/null 2>&1 || true
    python3 "$HERE/benches/strace-trace.py" "$WORK/strace" "$R" >"$WORK/strace.trace"
    calls=$(wc -l <"$WORK/strace.trace")
    if ((calls > ops)); then
      floor=("$REPLAY" "$WORK/strace.trace")
      floor_ops="$calls calls (strace; $ops traced)"
    fi
  fi
  rounds
  read -r ref_wall ref_cpu < <(medians "$REF")
  read -r our_wall our_cpu < <(medians "$OURS_OUT")
  read -r floor_wall floor_cpu < <(medians "$FLOOR_OUT")
  empty; "${ours[@]}" >/dev/null 2>&1 || true
  read -r noop_wall noop_cpu < <(series ours 0)
  # Where pristine's time goes (one more run, from its report).
  empty; "$OURS" --root="$R" --cmdline= provision --report="$WORK/report.json" >/dev/null 2>&1 || true
  steps=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(', '.join(f\"{s['name']} {s['duration_us']/1000:.1f}\" for s in d['steps'] if s['ran']))" "$WORK/report.json")
  rows+=("$(printf '| %-32s | %8s / %7s ms | %8s / %7s ms | %6s / %6s |' "provision, $name" "$ref_wall" "$ref_cpu" "$our_wall" "$our_cpu" "$(ratio "$ref_wall" "$our_wall")" "$(ratio "$ref_cpu" "$our_cpu")")")
  rows+=("$(printf '| %-32s | %21s | %8s / %7s ms | %15s |' "  second run, nothing to do" "-" "$noop_wall" "$noop_cpu" "-")")
  rows+=("$(printf '| %-32s | %21s | %8s / %7s ms | %15s |' "  floor (replay)" "-" "$floor_wall" "$floor_cpu" "-")")
  rows+=("floor:$name: replay of $floor_ops; pristine / floor $(ratio "$our_wall" "$floor_wall") wall, systemd / floor $(ratio "$ref_wall" "$floor_wall") wall (the most these mutations allow)")
  rows+=("steps:$name: $steps")
  teardown
done

units=$(ls /usr/lib/systemd/system | wc -l)
printf '\nWhole pipeline on this machine'"'"'s /usr (%s units), empty /etc and /var, median of %s runs (load %s)\n' "$units" "$N" "$(cut -d' ' -f1 /proc/loadavg)"
printf 'systemd 257: the four commands one after the other; pristine: one `provision`\n\n'
printf '| %-32s | %21s | %21s | %15s |\n' "case" "systemd 257 wall/cpu" "pristine wall/cpu" "speed-up w/c"
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..34})" "$(printf -- '-%.0s' {1..23})" "$(printf -- '-%.0s' {1..23})" "$(printf -- '-%.0s' {1..17})"
for r in "${rows[@]}"; do [[ $r == steps:* || $r == floor:* ]] || echo "$r"; done
echo
for r in "${rows[@]}"; do [[ $r == floor:* ]] && echo "${r#floor:}"; done
for r in "${rows[@]}"; do [[ $r == steps:* ]] && echo "pristine steps (ms), ${r#steps:}"; done
exit 0

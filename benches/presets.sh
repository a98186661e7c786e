#!/usr/bin/env bash
# Benchmark: `pristine preset-all` against the reference `systemctl --root preset-all`
# (systemd 257), side by side, on
#   1. this machine's units and presets (/usr/lib/systemd/{system,system-preset}) in an empty root
#   2. a synthetic tree of 2000 units (services, sockets, timers, templates with instances,
#      aliases, Also=, drop-ins) and a preset file with globs.
# Each run starts from a fresh copy of the tree; only the tool is timed. Prints the median of
# RUNS runs and checks that both tools produced the same links.
#
# Usage: benches/presets.sh [RUNS]   (default 15; builds the release binary if missing)
set -euo pipefail
RUNS=${1:-15}
here=$(cd "$(dirname "$0")/.." && pwd)
PRISTINE=$("$here/scripts/build-static" 2>/dev/null)
SYSTEMCTL=$(bash "$here/../shared/reference/systemd" | tail -n1)/systemctl
[ -x "$SYSTEMCTL" ] || { echo "no reference systemctl" >&2; exit 1; }

work=$(mktemp -d /dev/shm/pristine-bench-XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- corpus 1: this machine ---
mkdir -p "$work/host/usr/lib/systemd" "$work/host/etc"
cp -a /usr/lib/systemd/system /usr/lib/systemd/system-preset "$work/host/usr/lib/systemd/" 2>/dev/null || true
ln -s usr/lib "$work/host/lib"

# --- corpus 2: 2000 synthetic units ---
python3 - "$work/synth" <<'EOF'
import os, random, sys
root = sys.argv[1]
random.seed(2000)
u = os.path.join(root, "usr/lib/systemd/system")
os.makedirs(u); os.makedirs(os.path.join(root, "etc"))
os.symlink("usr/lib", os.path.join(root, "lib"))
targets = [f"t{i}.target" for i in range(20)] + ["multi-user.target", "sockets.target", "timers.target"]
for t in targets[:20]:
    open(os.path.join(u, t), "w").write("[Unit]\nDescription=t\n")
names = []
for i in range(2000):
    kind = random.choice(["service"] * 6 + ["socket", "timer", "path", "template"])
    if kind == "template":
        n = f"tpl{i}@.service"
        body = f"[Unit]\nDescription={n}\n[Service]\nExecStart=/bin/true %i\n[Install]\nWantedBy={random.choice(targets)}\nDefaultInstance=d{i}\n"
    else:
        n = f"unit{i}.{kind}"
        body = f"[Unit]\nDescription={n}\nAfter=network.target\n[{kind.capitalize()}]\nX=1\n[Install]\nWantedBy={random.choice(targets)}\n"
        if random.random() < 0.2:
            body += f"RequiredBy={random.choice(targets)}\n"
        if random.random() < 0.1 and kind == "service":
            body += f"Alias=alias{i}.service\n"
        if random.random() < 0.1 and names:
            body += f"Also={random.choice(names)}\n"
    names.append(n)
    open(os.path.join(u, n), "w").write(body)
    if random.random() < 0.05:
        d = os.path.join(u, n + ".d")
        os.makedirs(d)
        open(os.path.join(d, "10-extra.conf"), "w").write(f"[Install]\nWantedBy={random.choice(targets)}\n")
p = os.path.join(root, "usr/lib/systemd/system-preset")
os.makedirs(p)
open(os.path.join(p, "90-bench.preset"), "w").write(
    "enable unit1*\ndisable unit2*.socket\nenable tpl*@.service a b\nignore unit3*\nenable *.timer\ndisable *\n")
EOF

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# run TOOL ROOT: prints "wall_ms cpu_ms" (cpu = user + sys) of one preset-all run.
run() {
    local TIMEFORMAT='%R %U %S' t
    t=$( { time "$1" --root="$2" preset-all >/dev/null 2>&1; } 2>&1 )
    awk '{ printf "%.1f %.1f\n", $1 * 1000, ($2 + $3) * 1000 }' <<<"$t"
}

bench() { # name tree
    local name=$1 tree=$2 i wa=() ca=() wb=() cb=() r
    for ((i = 0; i < RUNS; i++)); do
        rm -rf "$work/a" "$work/b"; cp -a "$tree" "$work/a"; cp -a "$tree" "$work/b"
        r=($(run "$SYSTEMCTL" "$work/a")); wa+=("${r[0]}"); ca+=("${r[1]}")
        r=($(run "$PRISTINE" "$work/b")); wb+=("${r[0]}"); cb+=("${r[1]}")
    done
    local same=yes
    diff <(cd "$work/a/etc" && find . -printf '%p %l\n' | sort) \
         <(cd "$work/b/etc" && find . -printf '%p %l\n' | sort) >/dev/null || same=NO
    local links; links=$(find "$work/a/etc" -type l | wc -l)
    local mwa mwb mca mcb
    mwa=$(printf '%s\n' "${wa[@]}" | median); mwb=$(printf '%s\n' "${wb[@]}" | median)
    mca=$(printf '%s\n' "${ca[@]}" | median); mcb=$(printf '%s\n' "${cb[@]}" | median)
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "inf" }'; }
    printf '%-30s %6s %6s | %10s %10s %7s | %10s %10s %7s\n' "$name" "$links" "$same" \
        "$mwa" "$mwb" "$(ratio "$mwa" "$mwb")" "$mca" "$mcb" "$(ratio "$mca" "$mcb")"
}

echo "median of $RUNS runs, milliseconds; cpu = user + sys"
printf '%-30s %6s %6s | %10s %10s %7s | %10s %10s %7s\n' corpus links same \
    "wall sysctl" "wall prist" speedup "cpu sysctl" "cpu prist" speedup
bench "this machine ($(ls "$work/host/usr/lib/systemd/system" | wc -l) entries)" "$work/host"
bench "synthetic (2000 units)" "$work/synth"

#!/bin/bash
# Benchmark: pristine tmpfiles vs the reference systemd-tmpfiles 257, side by side.
#  1. this machine's /usr/lib/tmpfiles.d, --create --boot into an empty root (users from the
#     reference systemd-sysusers and /usr/lib/sysusers.d);
#  2. a synthetic 5000-line config with 20 000 old files to --clean.
# Wall-clock medians of N runs (tree preparation excluded). Usage: benches/tmpfiles.sh [N]
set -euo pipefail
N=${1:-10}
HERE=$(cd "$(dirname "$0")/.." && pwd)
REFBIN=$(bash "$HERE/../shared/reference/systemd" | tail -n1)
REF="$REFBIN/systemd-tmpfiles"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HERE/target}
OURS=$("$HERE/scripts/build-static" 2>/dev/null)
WORK=$(mktemp -d /tmp/pristine-bench-tmpfiles.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.1f", m/1e6}'; }

prep_real() { # $1 = root
    rm -rf "$1"; mkdir -p "$1/usr/lib"
    cp -r /usr/lib/sysusers.d /usr/lib/tmpfiles.d "$1/usr/lib/"
    "$REFBIN/systemd-sysusers" --root="$1" >/dev/null 2>&1
}

prep_clean() { # $1 = root; 5000 directories x 4 old files
    rm -rf "$1"; mkdir -p "$1/etc/tmpfiles.d" "$1/var/tmp/bench"
    python3 - "$1" <<'EOF'
import os, sys
root = sys.argv[1]
old = 1_500_000_000
with open(os.path.join(root, "etc/tmpfiles.d/bench.conf"), "w") as conf:
    for d in range(5000):
        p = f"/var/tmp/bench/d{d}"
        conf.write(f"d {p} 0755 - - m:1d\n")
        os.makedirs(root + p)
        for f in range(4):
            fp = f"{root}{p}/f{f}"
            with open(fp, "w") as fh:
                fh.write("x")
            os.utime(fp, (old, old))
EOF
}

bench() { # $1 = label, $2 = prep fn, $3.. = args
    local label=$1 prep=$2; shift 2
    local tr to
    tr=$(for _ in $(seq "$N"); do $prep "$WORK/r"; s=$(now); "$REF" --root="$WORK/r" "$@" >/dev/null 2>&1 || true; e=$(now); echo $((e - s)); done | median)
    to=$(for _ in $(seq "$N"); do $prep "$WORK/r"; s=$(now); "$OURS" tmpfiles --root="$WORK/r" "$@" >/dev/null 2>&1 || true; e=$(now); echo $((e - s)); done | median)
    printf "| %-48s | %12s | %12s |\n" "$label" "$tr ms" "$to ms"
}

echo "runs per cell: $N (median wall clock)"
printf "| %-48s | %12s | %12s |\n" "workload" "systemd 257" "pristine"
printf "|%s|%s|%s|\n" "--------------------------------------------------" "--------------" "--------------"
bench "/usr/lib/tmpfiles.d --create --boot, empty root" prep_real --create --boot
bench "5000 lines, 20000 old files, --clean" prep_clean --clean
# Sanity: both actually cleaned (files left after one run each; 0 expected).
for tool in ref ours; do
    prep_clean "$WORK/r"
    if [ $tool = ref ]; then "$REF" --root="$WORK/r" --clean >/dev/null 2>&1 || true
    else "$OURS" tmpfiles --root="$WORK/r" --clean >/dev/null 2>&1 || true; fi
    echo "files left after --clean ($tool): $(find "$WORK/r/var/tmp/bench" -type f | wc -l)"
done

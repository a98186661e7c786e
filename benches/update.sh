#!/usr/bin/env bash
# Benchmark: seeded /usr image update, pristine vs casync, side by side.
#
# A 1 GiB image (OLD, in the active slot) and NEW = OLD with 1% of it changed in 1024 scattered
# places. casync makes the index and store of NEW (zstd, SHA-512/256, 16/64/256 KiB chunks);
# nginx serves it on 127.0.0.1. Then:
#   casync extract --seed=OLD --store=http://… NEW.caibx OUT
#   pristine update fetch http://…       (seeded from the active slot by its stored index)
# Reported: wall time, bytes the web server sent (from its access log), peak RSS.
#
# Vendor side, on MAKE_MIB (default 256) MiB of real binaries (a tar of /usr/lib and /usr/bin):
#   casync make --compression=C   vs   pristine update make --compression=C   for C in zstd, xz
# Reported: wall time, peak RSS, store size (du of the chunk files).
# Usage: [PRISTINE_BIN=…] benches/update.sh [SIZE_MIB] [MAKE_MIB]   (defaults 1024 256; 0 skips a part)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
size_mib=${1:-1024}
make_mib=${2:-256}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$here/target}
# PRISTINE_BIN= measures a given binary (e.g. the static one scripts/build-static prints).
bin=${PRISTINE_BIN:-}
if [[ -z $bin ]]; then
  bin=$("$here/scripts/build-static" 2>/dev/null)
fi
w=$(mktemp -d /tmp/pristine-bench-update.XXXXXX)
nginx_pid=
cleanup() {
  [[ -n $nginx_pid ]] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null || true
  rm -rf "$w"
}
trap cleanup EXIT

store_bytes() { find "$1" -name '*.cacnk' -printf '%s\n' | awk '{s += $1} END {print s+0}'; }
if ((make_mib > 0)); then
  echo "Vendor side: $make_mib MiB of /usr/lib and /usr/bin as one image ..." >&2
  tar cf - /usr/lib /usr/bin 2>/dev/null | head -c $((make_mib * 1024 * 1024)) >"$w/real.img" || true
  minisign -G -W -p "$w/make.pub" -s "$w/make.key" >/dev/null
  echo
  echo "update make vs casync make, $(stat -c %s "$w/real.img") bytes of binaries, 16/64/256 KiB chunks"
  printf '%-10s %-6s %10s %10s %14s %8s\n' tool codec "wall s" "peak RSS" "store bytes" "% input"
  for c in zstd xz; do
    rm -rf "$w/mk"; mkdir -p "$w/mk"
    /usr/bin/time -f '%e %M' -o "$w/mk.time" \
      casync make --compression="$c" --store="$w/mk/c.castr" "$w/mk/c.caibx" "$w/real.img" >/dev/null
    read -r t r <"$w/mk.time"; b=$(store_bytes "$w/mk/c.castr")
    printf '%-10s %-6s %10s %6s MiB %14s %7.1f%%\n' casync "$c" "$t" "$((r / 1024))" "$b" \
      "$(python3 -c "print($b * 100 / $(stat -c %s "$w/real.img"))")"
    /usr/bin/time -f '%e %M' -o "$w/mk.time" \
      "$bin" update make --key="$w/make.key" --version=1 --compression="$c" "$w/real.img" "$w/mk/p" 2>/dev/null
    read -r t r <"$w/mk.time"; b=$(store_bytes "$w/mk/p/image.castr")
    printf '%-10s %-6s %10s %6s MiB %14s %7.1f%%\n' pristine "$c" "$t" "$((r / 1024))" "$b" \
      "$(python3 -c "print($b * 100 / $(stat -c %s "$w/real.img"))")"
    cmp "$w/mk/c.caibx" "$w/mk/p/image.caibx" && echo "           (same index as casync)"
  done
  rm -rf "$w/mk" "$w/real.img"
fi
((size_mib > 0)) || exit 0

echo "Preparing a $size_mib MiB image and a 1% changed version in $w ..." >&2
head -c $((size_mib * 1024 * 1024)) /dev/urandom >"$w/old.img"
cp "$w/old.img" "$w/new.img"
python3 - "$w/new.img" <<'EOF'
import os, sys, random
p = sys.argv[1]
size = os.path.getsize(p)
changes = 1024
piece = size // 100 // changes          # 1% of the image in total
rnd = random.Random(42)
with open(p, "r+b") as f:
    for i in range(changes):
        at = i * (size // changes) + rnd.randrange(size // changes - piece)
        f.seek(at)
        f.write(os.urandom(piece))
EOF

# Vendor side (not timed): casync makes both indexes and the store of NEW.
mkdir -p "$w/pub" "$w/root/usr/lib/pristine/keys"
casync make --store="$w/pub/image.castr" "$w/old.caibx" "$w/old.img" >/dev/null
casync make --store="$w/pub/image.castr" "$w/new.caibx" "$w/new.img" >/dev/null
# Only NEW's chunks stay in the store (OLD's were needed for nothing but its index).
rm -rf "$w/pub/image.castr"
casync make --store="$w/pub/image.castr" "$w/new.caibx" "$w/new.img" >/dev/null
minisign -G -W -p "$w/root/usr/lib/pristine/keys/vendor.pub" -s "$w/vendor.key" >/dev/null
"$bin" update sign --key="$w/vendor.key" --version=2 --store="$w/pub/image.castr" "$w/new.caibx" "$w/pub" 2>/dev/null

# The web server.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$w/nginx/tmp"
cat >"$w/nginx/nginx.conf" <<EOF
daemon off; master_process off; pid $w/nginx/nginx.pid; error_log $w/nginx/error.log;
events { worker_connections 64; }
http { access_log $w/nginx/access.log; client_body_temp_path $w/nginx/tmp;
  proxy_temp_path $w/nginx/tmp; fastcgi_temp_path $w/nginx/tmp; uwsgi_temp_path $w/nginx/tmp;
  scgi_temp_path $w/nginx/tmp;
  server { listen 127.0.0.1:$port; root $w/pub; } }
EOF
nginx -e "$w/nginx/error.log" -p "$w/nginx" -c "$w/nginx/nginx.conf" &
nginx_pid=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
url=http://127.0.0.1:$port

# Bytes of chunk files the web server sent.
served() { awk '$7 ~ /\.cacnk$/ {s += $10} END {print s+0}' "$w/nginx/access.log"; }
changed_chunks=$(python3 - "$w/old.caibx" "$w/new.caibx" <<'EOF'
import sys
def ids(p):
    b = open(p, "rb").read()
    return [b[64 + i*40 + 8: 64 + i*40 + 40] for i in range((len(b) - 104) // 40)]
old = set(ids(sys.argv[1])); new = ids(sys.argv[2])
print(len(set(i for i in new if i not in old)), len(new))
EOF
)
cat "$w/old.img" >/dev/null   # both runs start with the seed in the page cache

# casync.
: >"$w/nginx/access.log"
/usr/bin/time -f '%e %M %U %S' -o "$w/casync.time" \
  casync extract --seed="$w/old.img" --store="$url/image.castr" "$w/new.caibx" "$w/casync.out" 2>/dev/null
casync_bytes=$(served)
cmp "$w/casync.out" "$w/new.img"
rm -f "$w/casync.out"

# pristine: slot A holds OLD (adopted with its index), slot B is written. An offline --root
# run finds its slots and state inside the root.
mkdir -p "$w/root/slots"
cp "$w/old.img" "$w/root/slots/a.img"
: >"$w/root/slots/b.img"
cat >"$w/root/usr/lib/pristine/pristine.toml" <<EOF
[update]
slots = ["/slots/a.img", "/slots/b.img"]
state-dir = "/var/lib/pristine/update"
EOF
"$bin" --root="$w/root" update adopt --slot=0 --version=1 --index="$w/old.caibx"
cat "$w/root/slots/a.img" >/dev/null
: >"$w/nginx/access.log"
/usr/bin/time -f '%e %M %U %S' -o "$w/pristine.time" \
  "$bin" --root="$w/root" --log-level=debug update fetch "$url" 2>"$w/pristine.log"
pristine_bytes=$(served)
cmp "$w/root/slots/b.img" "$w/new.img"

read -r ct cr cu cs <"$w/casync.time"
read -r pt pr pu ps <"$w/pristine.time"
read -r nchanged ntotal <<<"$changed_chunks"
store_changed=$(python3 - "$w/old.caibx" "$w/new.caibx" "$w/pub/image.castr" <<'EOF'
import sys, os
def ids(p):
    b = open(p, "rb").read()
    return [b[64 + i*40 + 8: 64 + i*40 + 40].hex() for i in range((len(b) - 104) // 40)]
old = set(ids(sys.argv[1]))
print(sum(os.path.getsize(os.path.join(sys.argv[3], i[:4], i + ".cacnk")) for i in set(ids(sys.argv[2])) if i not in old))
EOF
)
echo
echo "Seeded update of a $size_mib MiB image, 1% changed in 1024 places ($nchanged of $ntotal chunks new; their compressed size: $store_changed bytes)"
# CPU seconds (user + system) vary less than wall time on a shared machine.
printf '%-10s %10s %10s %18s %12s\n' tool "wall s" "CPU s" "chunk bytes sent" "peak RSS"
printf '%-10s %10s %10s %18s %9s MiB\n' casync "$ct" "$(python3 -c "print(round($cu + $cs, 2))")" "$casync_bytes" "$((cr / 1024))"
printf '%-10s %10s %10s %18s %9s MiB\n' pristine "$pt" "$(python3 -c "print(round($pu + $ps, 2))")" "$pristine_bytes" "$((pr / 1024))"
python3 -c "print('speed-up: %.1fx' % ($ct / max($pt, 0.01)))"
grep -E "Assembled|written to slot" "$w/pristine.log" | sed 's/^/pristine: /' 

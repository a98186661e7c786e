#!/usr/bin/env bash
# pristine's power-cut test: the example appliance (examples/appliance as /usr, plus a keep-list
# of files and a nested tree) boots under qemu (TCG) from a busybox initramfs whose /init is
# tests/vm/cut-init. Boot 0 provisions and measures how long a provisioning with a factory reset
# takes (the cut window); each of the next CUTS boots first converges and checks the system
# (the previous boot was cut), then starts a provisioning with a reset and is killed (kill -9
# qemu: a power cut) a random time into that window. A last boot converges and checks. Prints
# one line per boot; exits 1 if any check failed.
#
#   tests/vm/powercut.sh PRISTINE_BINARY OUTDIR [CUTS [SEED]]
#
# CUTS defaults to 20; SEED (for the cut times) to a random one, printed so a run can be
# repeated. Needs qemu-system-x86, linux-image-cloud-amd64, busybox-static, e2fsprogs.
set -euo pipefail
bin=$1 out=$2 cuts=${3:-20} seed=${4:-$((RANDOM * 32768 + RANDOM))}
here=$(cd "$(dirname "$0")" && pwd)
kernel=$(ls -1 /boot/vmlinuz-*-cloud-amd64 | sort -V | tail -n1)
mkdir -p "$out"
work=$out/work
rm -rf "$work"
mkdir -p "$work/root"

# 1. The image: the appliance's /usr, a keep-list with reference copies in /usr/share/cut.
cp -a "$here/../../examples/appliance/." "$work/root/"
ref=$work/root/usr/share/cut
mkdir -p "$ref/keepme/nested/deep"
echo "precious" > "$ref/keepme/data"
echo "deep" > "$ref/keepme/nested/deep/file"
head -c 4194304 /dev/urandom > "$ref/keepme/big"
echo "kept=yes" > "$ref/keep.conf"
mkdir -p "$work/root/var/lib"
cp -a "$ref/keepme" "$work/root/var/lib/keepme"
printf '[reset]\nkeep = ["/var/lib/app", "/var/lib/keepme", "/etc/keep.conf"]\n' \
  > "$work/root/usr/lib/pristine/zz-powercut.toml"
mkfs.ext4 -q -F -L root -d "$work/root" "$out/root.img" 64M
rm -rf "$work/root"

# 2. The initramfs.
"$here/initramfs.sh" "$bin" "$here/cut-init" "$out/initrd.img"

now_ms() { echo $(($(date +%s%N) / 1000000)); }
# Waits (at most $2 seconds) until log $1 has line $3 or qemu ($4) has exited; 0 if the line came.
wait_for() {
  local deadline=$(($(now_ms) + $2 * 1000))
  while (($(now_ms) < deadline)); do
    grep -aq "$3" "$1" && return 0
    kill -0 "$4" 2>/dev/null || { grep -aq "$3" "$1"; return; }
    sleep 0.02
  done
  return 1
}

# 3. The boots. A cut boot is killed a random time into the window; the window is what boot 0
# took from "window" to "done", plus a tenth so that the end of the run is cut too.
RANDOM=$seed
echo "powercut: seed $seed, $cuts cuts"
window=0 failed=0 cut=0
for n in $(seq 0 $((cuts + 1))); do
  log=$out/boot$n.log
  # qemu itself is the background job (no wrapper), so that kill -9 cuts its power.
  qemu-system-x86_64 -accel tcg -m 512 -smp 1 -nographic -no-reboot \
    -kernel "$kernel" -initrd "$out/initrd.img" \
    -drive "file=$out/root.img,format=raw,if=virtio" -device virtio-rng-pci \
    -append "console=ttyS0 panic=-1 loglevel=3" > "$log" 2>&1 &
  qemu=$!
  what="uncut"
  if wait_for "$log" 240 "PRISTINE-CUT: window" $qemu; then
    start=$(now_ms)
    if ((n == 0 || n > cuts)); then
      wait_for "$log" 240 "PRISTINE-CUT: done" $qemu || true
      if ((n == 0)); then window=$(($(now_ms) - start)); fi
    else
      delay=$(((RANDOM * 32768 + RANDOM) % (window + window / 10 + 1)))
      while (($(now_ms) < start + delay)); do sleep 0.005; done
      kill -9 $qemu 2>/dev/null || true
      if grep -aq "PRISTINE-CUT: done" "$log"; then what="cut at ${delay} ms (after the run)"; else
        what="cut at ${delay} ms"; cut=$((cut + 1)); fi
    fi
  fi
  # An uncut boot powers itself off; one that hangs is cut off (and its check looked at).
  for _ in $(seq 600); do kill -0 $qemu 2>/dev/null || break; sleep 0.2; done
  kill -9 $qemu 2>/dev/null || true
  wait $qemu 2>/dev/null || true
  check=$(grep -a "PRISTINE-CUT: check" "$log" | head -n1 | tr -d '\r' || true)
  [[ $check == *"check ok"* ]] || failed=$((failed + 1))
  echo "powercut: boot $n: ${check:-PRISTINE-CUT: check FAIL no check line}; then $what"
  if ((n == 0)); then echo "powercut: window ${window} ms"; fi
done
echo "powercut: $cut of $cuts cuts landed inside a provisioning run, $failed boot(s) failed their check"
((failed == 0))

#!/usr/bin/env bash
# pristine's power-cut test of `pristine update fetch` (driven by tests/vm_fetchcut.rs): two
# /usr slots (slot A holds version 1, adopted as good and booted), the root file system with
# the update state, and a read-only store disk with versions 2 and 3 boot under qemu (TCG) into
# a busybox initramfs (tests/vm/fetchcut-init) that never leaves the initrd. Every boot checks
# what the previous (cut) boot left (slot A's bytes, the state, the target slot never pending
# or good unless its bytes are the version's), finishes the interrupted fetch and checks it,
# then starts a fetch of the other version (2 and 3 alternate, so each cut lands in a fresh
# fetch over a pending slot) and is killed (kill -9 of qemu) at a random point of that fetch.
#
#   tests/vm/fetchcut.sh PRISTINE_BINARY OUTDIR [CUTS [SEED]]
#
# Images are 12 MiB of random bytes in 16 MiB slots, 16 KiB chunks (a fetch takes seconds
# under TCG). Output lines as in tests/vm/powercut.sh (see tests/vm/cutloop.sh).
set -euo pipefail
bin=$1 out=$2 cuts=${3:-20} seed=${4:-$RANDOM}
here=$(cd "$(dirname "$0")" && pwd)
kernel=$(ls -1 /boot/vmlinuz-*-cloud-amd64 | sort -V | tail -n1)
kver=${kernel#/boot/vmlinuz-}
RANDOM=$seed
echo "SEED $seed"

work=$out/work
rm -rf "$work"; mkdir -p "$work/root/etc/pristine" "$work/root/usr/lib/pristine/keys" "$work/store" "$work/extra/test"
minisign -G -W -p "$work/k.pub" -s "$work/k.key" < /dev/null > /dev/null
cp "$work/k.pub" "$work/root/usr/lib/pristine/keys/vendor.pub"
for v in 1 2 3; do
  head -c 12582912 /dev/urandom > "$work/usr$v.img"
  sha256sum < "$work/usr$v.img" | cut -d' ' -f1 > "$work/extra/test/v$v.sha256"
  dest=$work/store/v$v; [[ $v == 1 ]] && dest=$work/v1
  "$bin" update make --key="$work/k.key" --version=$v --chunk-size=16K "$work/usr$v.img" "$dest" 2> /dev/null
done
echo 12582912 > "$work/extra/test/size"
cp "$work/usr1.img" "$out/slot-a.img"; truncate -s 16M "$out/slot-a.img"
sha256sum < "$out/slot-a.img" | cut -d' ' -f1 > "$work/extra/test/slot-a.sha256"
rm -f "$out/slot-b.img"; truncate -s 16M "$out/slot-b.img"
# The adopted state of version 1, written by pristine itself with --root (in-root slot files
# stand in for the devices), then the settings name the devices.
mkdir -p "$work/root/slots"
cp "$out/slot-a.img" "$work/root/slots/a"; cp "$out/slot-b.img" "$work/root/slots/b"
printf '[update]\nslots = ["/slots/a", "/slots/b"]\ntries = 2\n' > "$work/root/etc/pristine/pristine.toml"
"$bin" --root="$work/root" update adopt --slot=0 --version=1 --index="$work/v1/image.caibx"
rm -r "$work/root/slots"
printf '[update]\nslots = ["/dev/vda", "/dev/vdb"]\ntries = 2\n' > "$work/root/etc/pristine/pristine.toml"
rm -f "$out/root.img" "$out/store.img"
mkfs.ext4 -q -F -d "$work/root" "$out/root.img" 32M > /dev/null
mkfs.ext4 -q -F -d "$work/store" "$out/store.img" 64M > /dev/null

"$here/busybox-initrd.sh" "$bin" "$here/fetchcut-init" "$kver" "$work/initrd" "$out/initrd.img" "$work/extra"

drives=(-drive "file=$out/slot-a.img,format=raw,if=virtio,cache=unsafe"
        -drive "file=$out/slot-b.img,format=raw,if=virtio,cache=unsafe"
        -drive "file=$out/root.img,format=raw,if=virtio,cache=unsafe"
        -drive "file=$out/store.img,format=raw,if=virtio,readonly=on")
. "$here/cutloop.sh"

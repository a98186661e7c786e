#!/usr/bin/env bash
# The update VM test's setup and boot (driven by tests/vm_update.rs): two small ext4 /usr
# images, version 2 made with `pristine update make --verity`, a busybox initramfs running
# tests/vm/update-init, one qemu boot (TCG unless PRISTINE_VM_ACCEL says otherwise).
#
#   tests/vm/update.sh PRISTINE_BINARY OUTDIR
#
# Needs (scripts/setup installs them): qemu-system-x86, linux-image-cloud-amd64, busybox-static,
# e2fsprogs, minisign, cpio.
set -euo pipefail
bin=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
kernel=$(ls -1 /boot/vmlinuz-*-cloud-amd64 | sort -V | tail -n1)
kver=${kernel#/boot/vmlinuz-}
rm -rf "$out" && mkdir -p "$out"
ird=$out/initrd
mkdir -p "$ird"/{bin,dev,proc,sys,run,etc,lib/modules,sysroot,test} "$out/usr1" "$out/usr2"

# Two versions of a small /usr (4096-byte blocks, no journal: mounted read-only).
head -c 3000000 /dev/urandom > "$out/usr1/blob"
cp "$out/usr1/blob" "$out/usr2/blob"
echo "version 1" > "$out/usr1/marker"
echo "PRISTINE-MARKER version 2" > "$out/usr2/marker"
for v in 1 2; do
  mkfs.ext4 -q -F -b 4096 -O ^has_journal -d "$out/usr$v" "$out/usr$v.img" 8M
done
minisign -G -W -p "$ird/test/k.pub" -s "$out/k.key" < /dev/null > /dev/null
"$bin" update make --key="$out/k.key" --version=1 "$out/usr1.img" "$ird/test/v1" 2> /dev/null
"$bin" update make --verity --key="$out/k.key" --version=2 "$out/usr2.img" "$ird/test/v2" 2> /dev/null
grep -obUa "PRISTINE-MARKER" "$out/usr2.img" | head -n1 | cut -d: -f1 > "$ird/test/marker-offset"
[[ -s $ird/test/marker-offset ]] || { echo "marker not found in the image" >&2; exit 1; }
cp "$out/usr1.img" "$out/slot-a.img"
truncate -s 16M "$out/slot-a.img"
truncate -s 16M "$out/slot-b.img"

cp /bin/busybox "$ird/bin/busybox"
cp "$bin" "$ird/bin/pristine"
cp "$here/update-init" "$ird/init"
touch "$ird/etc/initrd-release"
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk \
         reed_solomon dm-mod dm-bufio dm-verity; do
  f=$(find "/lib/modules/$kver" -name "$m.ko" | head -n1)
  [[ -n $f ]] && cp "$f" "$ird/lib/modules/"
done
(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) > "$out/initrd.img"

timeout ${PRISTINE_VM_TIMEOUT:-600} qemu-system-x86_64 -accel "${PRISTINE_VM_ACCEL:-tcg}" -m 512 \
  -smp 1 -nographic -no-reboot -kernel "$kernel" -initrd "$out/initrd.img" \
  -drive "file=$out/slot-a.img,format=raw,if=virtio" \
  -drive "file=$out/slot-b.img,format=raw,if=virtio" \
  -append "console=ttyS0 panic=-1 loglevel=4" > "$out/boot.log" 2>&1 || true
grep -a -E "PRISTINE-VM|pristine" "$out/boot.log" || true

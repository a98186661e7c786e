#!/usr/bin/env bash
# The update VM test's setup and boots (driven by tests/vm_update.rs; the scenario is in
# tests/vm/update-init): four small ext4 /usr images (versions 1-4, each shipping the trusted
# key), versions 2-4 made with `pristine update make --verity` into a store disk, a root disk
# holding pristine.toml and the adopted state of version 1, a busybox initramfs, five qemu boots
# (TCG unless PRISTINE_VM_ACCEL says otherwise).
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
mkdir -p "$ird"/{bin,dev,proc,sys,run,etc,lib/modules,sysroot,test} "$out/store" "$out/root/etc/pristine" "$out/root/usr"
minisign -G -W -p "$out/k.pub" -s "$out/k.key" < /dev/null > /dev/null

# Four versions of a small /usr (4096-byte blocks, no journal: mounted read-only).
head -c 3000000 /dev/urandom > "$out/blob"
for v in 1 2 3 4; do
  mkdir -p "$out/usr$v/lib/pristine/keys"
  cp "$out/k.pub" "$out/usr$v/lib/pristine/keys/vendor.pub"
  cp "$out/blob" "$out/usr$v/blob"
  echo "PRISTINE-MARKER version $v" > "$out/usr$v/marker"
  mkfs.ext4 -q -F -b 4096 -O ^has_journal -d "$out/usr$v" "$out/usr$v.img" 8M
  if [[ $v == 1 ]]; then
    "$bin" update make --key="$out/k.key" --version=1 "$out/usr1.img" "$out/v1" 2> /dev/null
  else
    "$bin" update make --verity --key="$out/k.key" --version=$v "$out/usr$v.img" "$out/store/v$v" 2> /dev/null
  fi
done
off() { grep -obUa "$1" "$2" | head -n1 | cut -d: -f1; }
off "PRISTINE-MARKER" "$out/usr2.img" > "$ird/test/marker-offset"
head -c 64 "$out/blob" > "$out/blob-head"
python3 - "$out/usr4.img" "$out/blob-head" > "$ird/test/blob-offset" <<'PY'
import sys
print(open(sys.argv[1], 'rb').read().find(open(sys.argv[2], 'rb').read()))
PY
[[ -s $ird/test/marker-offset && $(cat "$ird/test/blob-offset") -gt 0 ]] || { echo "offsets not found" >&2; exit 1; }

# Disks: slot A holds version 1, slot B is empty, the root holds the settings and the state of
# the adopted version 1 (written by pristine itself with --root: in-root slot files stand in
# for the devices, then the settings name the devices).
cp "$out/usr1.img" "$out/slot-a.img"; truncate -s 16M "$out/slot-a.img"
truncate -s 16M "$out/slot-b.img"
mkdir -p "$out/root/slots"
cp "$out/slot-a.img" "$out/root/slots/a"; cp "$out/slot-b.img" "$out/root/slots/b"
printf '[update]\nslots = ["/slots/a", "/slots/b"]\ntries = 1\n' > "$out/root/etc/pristine/pristine.toml"
"$bin" --root="$out/root" update adopt --slot=0 --version=1 --index="$out/v1/image.caibx"
rm -r "$out/root/slots"
printf '[update]\nslots = ["/dev/vda", "/dev/vdb"]\ntries = 1\n' > "$out/root/etc/pristine/pristine.toml"
mkfs.ext4 -q -F -d "$out/root" "$out/root.img" 32M
mkfs.ext4 -q -F -d "$out/store" "$out/store.img" 64M

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

for n in 1 2 3 4 5; do
  timeout ${PRISTINE_VM_TIMEOUT:-300} qemu-system-x86_64 -accel "${PRISTINE_VM_ACCEL:-tcg}" -m 512 \
    -smp 1 -nographic -no-reboot -kernel "$kernel" -initrd "$out/initrd.img" \
    -drive "file=$out/slot-a.img,format=raw,if=virtio" \
    -drive "file=$out/slot-b.img,format=raw,if=virtio" \
    -drive "file=$out/root.img,format=raw,if=virtio" \
    -drive "file=$out/store.img,format=raw,if=virtio,readonly=on" \
    -append "console=ttyS0 panic=-1 loglevel=4 no_timer_check" > "$out/boot$n.log" 2>&1 || true
  grep -a -E "PRISTINE-VM|pristine" "$out/boot$n.log" || true
done

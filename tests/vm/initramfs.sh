#!/usr/bin/env bash
# Builds the busybox initramfs of the VM tests: busybox, pristine as /bin/pristine, INIT as
# /init, /etc/initrd-release, and the virtio modules of the newest cloud kernel.
#
#   tests/vm/initramfs.sh PRISTINE_BINARY INIT OUTPUT.img
set -euo pipefail
bin=$1 init=$2 img=$3
kernel=$(ls -1 /boot/vmlinuz-*-cloud-amd64 | sort -V | tail -n1)
kver=${kernel#/boot/vmlinuz-}
ird=$(mktemp -d)
trap 'rm -rf "$ird"' EXIT
mkdir -p "$ird"/{bin,dev,proc,sys,run,etc,lib/modules,sysroot}
cp /bin/busybox "$ird/bin/busybox"
cp "$bin" "$ird/bin/pristine"
cp "$init" "$ird/init"
touch "$ird/etc/initrd-release"
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk virtio-rng; do
  f=$(find "/lib/modules/$kver" -name "$m.ko" | head -n1)
  [[ -n $f ]] && cp "$f" "$ird/lib/modules/"
done
(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) > "$img"

#!/usr/bin/env bash
# Builds the busybox initramfs of the VM tests: busybox, the pristine binary, INIT as /init,
# the virtio modules of KVER, /etc/initrd-release, plus the files of EXTRA_DIR if given.
#
#   tests/vm/busybox-initrd.sh PRISTINE_BINARY INIT KVER WORKDIR OUT_IMAGE [EXTRA_DIR]
set -euo pipefail
bin=$1 init=$2 kver=$3 ird=$4 image=$5 extra=${6:-}
mkdir -p "$ird"/{bin,dev,proc,sys,run,etc,lib/modules,sysroot}
cp /bin/busybox "$ird/bin/busybox"
cp "$bin" "$ird/bin/pristine"
cp "$init" "$ird/init"
touch "$ird/etc/initrd-release"
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk virtio-rng; do
  f=$(find "/lib/modules/$kver" -name "$m.ko" | head -n1)
  [[ -n $f ]] && cp "$f" "$ird/lib/modules/"
done
[[ -z $extra ]] || cp -a "$extra/." "$ird/"
(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) > "$image"

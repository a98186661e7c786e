#!/usr/bin/env bash
# Builds the systemd-based dracut initrd of the VM tests: dracut's own modules plus pristine's
# (initrd/dracut, as module "pristine"), without touching the host's dracut or its config.
#
#   tests/vm/dracut-initrd.sh PRISTINE_BINARY KVER WORKDIR OUT_IMAGE [SYSROOT]
#
# SYSROOT (optional): the tree whose /usr/lib/pristine and /etc/pristine settings the module
# reads (PRISTINE_SYSROOT; an [update] slots setting there adds pristine-update-boot.service).
set -euo pipefail
bin=$1 kver=$2 work=$3 image=$4 sysroot=${5:-}
here=$(cd "$(dirname "$0")" && pwd)
base=$work/dracut
rm -rf "$base" "$work/dracut.conf.d"
mkdir -p "$base" "$work/dracut.conf.d"
cp -rs /usr/lib/dracut/. "$base/"
cp -r "$here/../../initrd/dracut" "$base/modules.d/90pristine"
dracutbasedir=$base PRISTINE_BINARY=$bin PRISTINE_SYSROOT=$sysroot dracut --quiet --force \
  --no-hostonly --no-hostonly-cmdline --conf /dev/null --confdir "$work/dracut.conf.d" --kver "$kver" \
  --modules "systemd systemd-initrd base fs-lib rootfs-block kernel-modules udev-rules pristine" \
  --add-drivers "virtio_pci virtio_blk virtio_rng ext4" --compress "gzip -1" \
  "$image" > "$work/dracut.log" 2>&1 || { tail -n 30 "$work/dracut.log" >&2; exit 1; }

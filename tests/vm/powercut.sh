#!/usr/bin/env bash
# pristine's power-cut test: a debootstrapped Debian 12 with full /etc and /var and a factory
# reset requested boots under qemu (TCG) into a busybox initramfs (tests/vm/powercut-init) that
# runs `pristine provision` and powers off, never leaving the initrd. Each cut boot is killed
# (kill -9 qemu: the guest's page cache is lost, as in a power cut) at a random point while
# pristine runs; the next boot runs pristine to the end, then checks the disk (the keep-list by
# checksum, nothing left of the reset) and arms the next reset.
#
#   tests/vm/powercut.sh PRISTINE_BINARY OUTDIR [CUTS [SEED]]
#
# Boot 0 is uncut (it calibrates); every later boot first finishes what the previous cut left
# and checks it, then, except the last, arms a new reset and is cut during that pristine run. Prints per boot "CHECK n log=FILE
# first_ms=MS" and "CUT n delay=MS interrupted=yes|no last=LINE"; logs are OUTDIR/bootN.log.
set -euo pipefail
bin=$1 out=$2 cuts=${3:-20} seed=${4:-$RANDOM}
here=$(cd "$(dirname "$0")" && pwd)
kernel=$(ls -1 /boot/vmlinuz-*-cloud-amd64 | sort -V | tail -n1)
kver=${kernel#/boot/vmlinuz-}
rootfs=$("$here/rootfs.sh")
RANDOM=$seed
echo "SEED $seed"

# The image: the whole Debian tree (so the first reset has a real /etc and /var to flush),
# a keep-list with known checksums, a reset requested.
work=$out/work
rm -rf "$work"; mkdir -p "$work/root" "$work/extra"
root=$work/root
tar -C "$root" -xf "$rootfs"
mkdir -p "$root/usr/lib/pristine" "$root/var/lib/keep/sub" "$root/var/lib/pristine"
cat > "$root/usr/lib/pristine/pristine.toml" <<'TOML'
[reset]
level = "full"
keep = ["/var/lib/keep", "/etc/keep.conf"]
machine-id = "keep"

[firstboot]
hostname = "pristine-vm"
TOML
head -c 4194304 /dev/urandom > "$root/var/lib/keep/big"
echo "small kept file" > "$root/var/lib/keep/sub/small"
echo "kept = yes" > "$root/etc/keep.conf"
echo 0123456789abcdef0123456789abcdef > "$root/etc/machine-id"
echo "# reset requested by the power-cut test" > "$root/var/lib/pristine/factory-reset"
(cd "$root" && sha256sum var/lib/keep/big var/lib/keep/sub/small etc/keep.conf etc/machine-id) > "$work/extra/expected.sha256"
rm -f "$out/root.img"
mkfs.ext4 -q -F -L root -d "$root" "$out/root.img" 2G
rm -rf "$root"

# The initramfs, with the expected checksums.
"$here/busybox-initrd.sh" "$bin" "$here/powercut-init" "$kver" "$work/initrd" "$out/initrd.img" "$work/extra"

drives=(-drive "file=$out/root.img,format=raw,if=virtio,cache=unsafe")
. "$here/cutloop.sh"

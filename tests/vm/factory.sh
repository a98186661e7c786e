#!/usr/bin/env bash
# pristine's factory VM test: a debootstrapped Debian 12 with openssh-server, cron and rsyslog,
# with pristine installed by scripts/install, its initramfs built by initramfs-tools inside the
# image (update-initramfs in a chroot), converted by `pristine factory`, boots with an empty
# /etc and /var. A second boot of the same converted image uses a dracut-built initrd.
#
#   tests/vm/factory.sh PRISTINE_BINARY OUTDIR
#
# Leaves OUTDIR/before-links (the enablement links before the conversion) and
# OUTDIR/boot-initramfs-tools.log, OUTDIR/boot-dracut.log (serial consoles). The image gets no
# hand-written fix-up: only what scripts/install ships and what `pristine factory` writes. The
# test's own scaffolding is the host's kernel, its modules and config (the image has no kernel
# package) and tests/vm/factory-check.service, which reports the result and powers off.
# The debootstrapped tree is cached (flock'd) in $PRISTINE_VM_CACHE (default
# ~/.cache/pristine-vm).
set -euo pipefail
bin=$(realpath "$1") out=$2
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${PRISTINE_VM_CACHE:-$HOME/.cache/pristine-vm}/bookworm-factory
mkdir -p "$cache" "$out"
out=$(realpath "$out")
kernel=$(ls -1 /boot/vmlinuz-*-cloud-amd64 | sort -V | tail -n1)
kver=${kernel#/boot/vmlinuz-}
mirror=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1)
[[ -n $mirror ]] || mirror=http://deb.debian.org/debian

# 1. The Debian tree, as the distribution makes it (cached; one debootstrap at a time).
exec 9>"$cache.lock"
flock 9
if [[ ! -f $cache/rootfs.tar ]]; then
  rm -rf "$cache/rootfs.tmp"
  debootstrap --variant=minbase \
    --include=systemd-sysv,dbus,udev,kmod,openssh-server,cron,rsyslog,initramfs-tools,zstd \
    bookworm "$cache/rootfs.tmp" "$mirror" > "$cache/debootstrap.log" 2>&1 \
    || { tail -n 30 "$cache/debootstrap.log" >&2; exit 1; }
  tar -C "$cache/rootfs.tmp" -cf "$cache/rootfs.tar.tmp" . && mv "$cache/rootfs.tar.tmp" "$cache/rootfs.tar"
  rm -rf "$cache/rootfs.tmp"
fi
flock -u 9

# 2. The image: pristine installed as a package would be, the initramfs built inside it.
work=$out/work
root=$work/root
rm -rf "$work"; mkdir -p "$root"
tar -C "$root" -xf "$cache/rootfs.tar"
"$repo/scripts/install" --root="$root" --binary="$bin" > "$work/install.log"
mkdir -p "$root/usr/lib/modules"
cp -a "/lib/modules/$kver" "$root/usr/lib/modules/"
cp "/boot/config-$kver" "$root/boot/"
install -m 0644 "$here/factory-check.service" "$root/usr/lib/systemd/system/"
mkdir -p "$root/usr/lib/systemd/system/multi-user.target.wants"
ln -sfn ../factory-check.service "$root/usr/lib/systemd/system/multi-user.target.wants/factory-check.service"
(cd "$root/etc/systemd/system" && find . -type l -printf '%P\n' | LC_ALL=C sort) > "$out/before-links"
mounts=()
cleanup() { for ((i=${#mounts[@]}-1; i>=0; i--)); do umount -l "${mounts[i]}" 2>/dev/null || true; done; }
trap cleanup EXIT
for m in proc sys dev; do mount --bind "/$m" "$root/$m"; mounts+=("$root/$m"); done
chroot "$root" update-initramfs -c -k "$kver" > "$work/update-initramfs.log" 2>&1 \
  || { tail -n 30 "$work/update-initramfs.log" >&2; exit 1; }
chroot "$root" lsinitramfs "/boot/initrd.img-$kver" > "$work/initramfs.list"
cleanup; mounts=()
grep -q 'usr/bin/pristine$' "$work/initramfs.list" && grep -q 'scripts/init-bottom/pristine$' "$work/initramfs.list" \
  || { echo "update-initramfs did not pick pristine up" >&2; exit 1; }
cp "$root/boot/initrd.img-$kver" "$out/initrd-initramfs-tools.img"
# The kernel modules were test scaffolding for update-initramfs: not part of the image.
rm -rf "$root/usr/lib/modules/$kver" "$root/boot/initrd.img-$kver" "$root/boot/config-$kver"

# 3. The conversion.
"$bin" --root="$root" factory > "$work/factory.log" 2>&1 \
  || { cat "$work/factory.log" >&2; echo "pristine factory failed" >&2; exit 1; }
[[ -z $(ls -A "$root/etc") && -z $(ls -A "$root/var") ]] || { echo "/etc or /var not empty after factory" >&2; exit 1; }
rm -f "$out/root.img"
mkfs.ext4 -q -F -L root -d "$root" "$out/root.img" 2G
cp --sparse=always "$out/root.img" "$out/root-dracut.img"

# 4. A dracut initrd for the second image (dracut's modules plus initrd/dracut, host's dracut).
"$here/dracut-initrd.sh" "$bin" "$kver" "$work" "$out/initrd-dracut.img"
rm -rf "$root"

# 5. Boot each.
boot() { # NAME IMAGE INITRD EXTRA_APPEND
  timeout "${PRISTINE_VM_TIMEOUT:-900}" qemu-system-x86_64 -accel tcg -m 1024 -smp 2 -nographic -no-reboot \
    -kernel "$kernel" -initrd "$3" -drive "file=$2,format=raw,if=virtio" -device virtio-rng-pci \
    -append "console=ttyS0 panic=-1 loglevel=4 no_timer_check root=/dev/vda rw $4" > "$out/boot-$1.log" 2>&1 || true
  grep -a -E "FACTORY-VM|pristine\[|pristine:" "$out/boot-$1.log" || true
}
# The two boots are independent (each its own disk): run them side by side.
boot initramfs-tools "$out/root.img" "$out/initrd-initramfs-tools.img" "" &
boot dracut "$out/root-dracut.img" "$out/initrd-dracut.img" "rootfstype=ext4 rd.emergency=poweroff rd.shell=0" &
wait
rm -f "$out/root.img" "$out/root-dracut.img"

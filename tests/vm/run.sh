#!/usr/bin/env bash
# pristine's VM boot test: a debootstrapped Debian 12 whose /etc and /var are empty boots under
# qemu (TCG) with pristine in its initramfs, BOOTS times. The first boot must come up with no
# failed units. With the busybox initramfs the system is stateless (/etc and /var tmpfs) and
# admin changes made in boot 1 must come back in boot 2 through the state operators; with
# dracut, later boots must find nothing to do.
#
#   tests/vm/run.sh PRISTINE_BINARY OUTDIR [INITRD [BOOTS]]
#
# INITRD is "busybox" (default: a minimal initramfs whose /init, tests/vm/init, runs pristine
# before switch_root) or "dracut" (a systemd-based initrd built by dracut with the "pristine"
# module from initrd/dracut, which runs pristine-provision.service). BOOTS defaults to 2.
#
# Needs (scripts/setup installs them): debootstrap, qemu-system-x86, linux-image-cloud-amd64,
# busybox-static, e2fsprogs, dracut-core. The debootstrapped tree is cached in
# $PRISTINE_VM_CACHE (default ~/.cache/pristine-vm).
set -euo pipefail
bin=$1 out=$2 initrd=${3:-busybox} boots=${4:-2}
here=$(cd "$(dirname "$0")" && pwd)
kernel=$(ls -1 /boot/vmlinuz-*-cloud-amd64 | sort -V | tail -n1)
kver=${kernel#/boot/vmlinuz-}

# 1. The Debian tree (cached).
rootfs=$("$here/rootfs.sh")

# 2. The image: vendor /usr only, /etc and /var empty, plus the test's report unit and preset.
work=$out/work
rm -rf "$work"; mkdir -p "$work/root"
tar -C "$work/root" -xf "$rootfs"
find "$work/root/etc" "$work/root/var" -mindepth 1 -delete
install -m 0644 "$here/pristine-vm-check.service" "$work/root/usr/lib/systemd/system/"
mkdir -p "$work/root/usr/lib/systemd/system-preset"
echo "enable pristine-vm-check.service" > "$work/root/usr/lib/systemd/system-preset/00-pristine-vm.preset"
for f in "$here"/../../sysusers.d/*.conf; do [[ -f $f ]] && install -m 0644 "$f" "$work/root/usr/lib/sysusers.d/"; done
for f in "$here"/../../tmpfiles.d/*.conf; do [[ -f $f ]] && install -m 0644 "$f" "$work/root/usr/lib/tmpfiles.d/"; done
mkdir -p "$work/root/usr/lib/pristine"
printf '[firstboot]\nhostname = "pristine-vm"\n' > "$work/root/usr/lib/pristine/pristine.toml"
# State operators (busybox flow, stateless: /etc and /var are tmpfs on every boot): boot 1's
# check unit changes the hostname, enables a unit and writes a stashed file; the shutdown unit
# saves them to a registry on the root file system; boot 2 must have them back.
if [[ $initrd == busybox ]]; then
  printf 'mode = "stateless"\n\n[state]\nregistry = "/pristine-state"\n' > "$work/root/usr/lib/pristine/50-state.toml"
  install -m 0755 "$bin" "$work/root/usr/bin/pristine"
  install -m 0644 "$here/../../units/pristine-state-save.service" "$here/pristine-vm-extra.service" "$work/root/usr/lib/systemd/system/"
  mkdir -p "$work/root/usr/lib/pristine/state.d"
  install -m 0644 "$here/state.toml" "$work/root/usr/lib/pristine/state.d/50-vm.toml"
  printf 'enable pristine-state-save.service\ndisable pristine-vm-extra.service\n' >> "$work/root/usr/lib/systemd/system-preset/00-pristine-vm.preset"
fi
rm -f "$out/root.img"
mkfs.ext4 -q -F -L root -d "$work/root" "$out/root.img" 2G
rm -rf "$work/root"

# 3. The initramfs.
append="console=ttyS0 panic=-1 loglevel=4 no_timer_check"
if [[ $initrd == busybox ]]; then
  "$here/busybox-initrd.sh" "$bin" "$here/init" "$kver" "$work/initrd" "$out/initrd.img"
else
  "$here/dracut-initrd.sh" "$bin" "$kver" "$work" "$out/initrd.img"
  append="$append root=/dev/vda rootfstype=ext4 rw rd.emergency=poweroff rd.shell=0"
fi

# 4. Boot.
for n in $(seq "$boots"); do
  timeout ${PRISTINE_VM_TIMEOUT:-900} qemu-system-x86_64 -accel tcg -m 1024 -smp 2 -nographic -no-reboot \
    -kernel "$kernel" -initrd "$out/initrd.img" \
    -drive "file=$out/root.img,format=raw,if=virtio" -device virtio-rng-pci \
    -append "$append" > "$out/boot$n.log" 2>&1 || true
  grep -a -E "PRISTINE-VM|pristine\[|pristine:" "$out/boot$n.log" || true
done

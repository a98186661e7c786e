#!/usr/bin/env bash
# The update VM test with a real systemd initrd (driven by tests/vm_update_systemd.rs): a
# debootstrapped Debian 12 on ONE GPT disk — partition "root" (/, /etc, /var, the merged-/usr
# symlinks, the update state) and two /usr slots "usr-a", "usr-b", each holding an ext4 /usr
# with its dm-verity tree appended (`pristine update make --verity`) — plus a second disk with
# the update store (versions 2, 3, 4; no network in the VM). The initrd is dracut's systemd
# initrd with pristine's module: pristine-update-boot.service chooses and mounts the slot at
# /sysroot/usr, pristine-provision.service provisions /sysroot, and in the real system
# units/pristine-update-confirm.service confirms after boot-complete.target. The scenario is
# driven from the booted system by tests/vm/update-systemd-check (a unit in every version's
# /usr, it reports on the serial console, does the boot's step and powers off).
#
#   tests/vm/update-systemd.sh PRISTINE_BINARY OUTDIR
#
# Leaves OUTDIR/boot1.log … boot5.log (serial consoles) and OUTDIR/times (seconds per phase).
# Needs (scripts/setup installs them): debootstrap, qemu-system-x86, linux-image-cloud-amd64,
# e2fsprogs, fdisk (sfdisk), dracut-core, minisign. The debootstrapped tree is cached by
# tests/vm/rootfs.sh; the images (disk, store, initrd) are cached in
# $PRISTINE_VM_CACHE/update-systemd/KEY, KEY being the hash of everything they are made from
# (the binary, these scripts, the module, the units, the Debian tree).
set -euo pipefail
bin=$(realpath "$1") out=$2
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
kernel=$(ls -1 /boot/vmlinuz-*-cloud-amd64 | sort -V | tail -n1)
kver=${kernel#/boot/vmlinuz-}
rm -rf "$out" && mkdir -p "$out"
out=$(realpath "$out")
t0=$(date +%s)
rootfs=$("$here/rootfs.sh")

key=$( { sha256sum "$bin" "$0" "$here/update-systemd-check" "$here/dracut-initrd.sh" \
          "$repo"/initrd/dracut/* "$repo"/units/* "$repo/scripts/install" | cut -d' ' -f1
        stat -c '%s %Y' "$rootfs" "$kernel"; } | sha256sum | cut -c1-16)
cachedir=${PRISTINE_VM_CACHE:-$HOME/.cache/pristine-vm}/update-systemd
cache=$cachedir/$key
mkdir -p "$cachedir"
exec 9>"$cachedir.lock"
flock 9
if [[ ! -f $cache/done ]]; then
  rm -rf "$cachedir"/*   # one image set at a time: the old ones are stale
  work=$out/work
  mkdir -p "$work" "$cache"
  minisign -G -W -p "$work/k.pub" -s "$work/k.key" < /dev/null > /dev/null

  # 1. The /usr trees: Debian's /usr (without docs, man pages and translations), pristine as
  #    scripts/install puts it, the [update] settings, the test's check unit. Version 2 adds one
  #    sysusers.d user, one tmpfiles.d directory and one unit enabled by a preset; version 3
  #    adds a health check that fails (RequiredBy=boot-complete.target); version 4 is 2 again
  #    with another version number.
  base=$work/base
  mkdir -p "$base"
  tar -C "$base" -xf "$rootfs"
  rm -rf "$base"/usr/share/{doc,man,locale,info}
  "$repo/scripts/install" --root="$base" --binary="$bin" > "$work/install.log"
  mkdir -p "$base/usr/lib/pristine/keys" "$base/usr/lib/pristine-vm"
  cp "$work/k.pub" "$base/usr/lib/pristine/keys/vendor.pub"
  printf '[update]\nslots = ["/dev/disk/by-partlabel/usr-a", "/dev/disk/by-partlabel/usr-b"]\ntries = 1\n' \
    > "$base/usr/lib/pristine/pristine.toml"
  install -m 0755 "$here/update-systemd-check" "$base/usr/lib/pristine-vm/check"
  cat > "$base/usr/lib/systemd/system/pristine-vm-check.service" <<'UNIT'
[Unit]
Description=pristine update VM test: report, do this boot's step, power off
After=multi-user.target pristine-update-confirm.service

[Service]
Type=oneshot
StandardOutput=journal+console
ExecStart=/usr/lib/pristine-vm/check
UNIT
  mkdir -p "$base/usr/lib/systemd/system/multi-user.target.wants"
  ln -sfn ../pristine-vm-check.service "$base/usr/lib/systemd/system/multi-user.target.wants/"
  for v in 1 2 3 4; do
    t=$work/usr$v
    cp -a "$base/usr" "$t"
    echo "$v" > "$t/lib/pristine-vm/version"
    if [[ $v != 1 ]]; then
      echo 'u pvmtwo - "pristine VM test, version 2"' > "$t/lib/sysusers.d/pristine-vm-v2.conf"
      echo 'd /var/lib/pristine-vm-v2 0750 pvmtwo pvmtwo -' > "$t/lib/tmpfiles.d/pristine-vm-v2.conf"
      printf '[Unit]\nDescription=pristine VM test: the unit version 2 adds\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n\n[Install]\nWantedBy=multi-user.target\n' \
        > "$t/lib/systemd/system/pristine-vm-v2.service"
      echo 'enable pristine-vm-v2.service' > "$t/lib/systemd/system-preset/50-pristine-vm-v2.preset"
    fi
    if [[ $v == 3 ]]; then
      printf '[Unit]\nDescription=pristine VM test: a health check that fails\nBefore=boot-complete.target\n\n[Service]\nType=oneshot\nExecStart=/bin/false\n' \
        > "$t/lib/systemd/system/pristine-vm-health.service"
      mkdir -p "$t/lib/systemd/system/boot-complete.target.requires"
      ln -s ../pristine-vm-health.service "$t/lib/systemd/system/boot-complete.target.requires/"
    fi
    mkfs.ext4 -q -F -b 4096 -O ^has_journal -L usr -d "$t" "$work/usr$v.img" 160M
    "$bin" update make --verity --key="$work/k.key" --version=$v "$work/usr$v.img" "$work/store/v$v" > "$work/make$v.log" 2>&1 \
      || { cat "$work/make$v.log" >&2; exit 1; }
    rm -rf "$t"
  done
  # 2. Version 1 in slot usr-a as a fetch writes it (its verity tree appended): fetched offline
  #    into in-root slot files (slot b adopted as a placeholder "running" version 0 so the fetch
  #    has a running slot), then the real state is made the way a factory install makes it:
  #    `update adopt` of slot 0 as the good, booted version 1 with its index (adopt records no
  #    root hash, so version 1 is mounted without dm-verity; every fetched version uses it).
  inst=$work/inst
  mkdir -p "$inst/usr/lib/pristine/keys" "$inst/slots"
  cp "$work/k.pub" "$inst/usr/lib/pristine/keys/vendor.pub"
  printf '[update]\nslots = ["/slots/a", "/slots/b"]\ntries = 1\n' > "$inst/usr/lib/pristine/pristine.toml"
  slotsize=$(( ($(stat -c %s "$work/usr1.img") / 1048576 + 8) * 1048576 ))
  truncate -s "$slotsize" "$inst/slots/a" "$inst/slots/b"
  { "$bin" --root="$inst" update adopt --slot=1 --version=0 &&
    "$bin" --root="$inst" update fetch "$work/store/v1" &&
    rm -r "$inst/var/lib/pristine/update" &&
    "$bin" --root="$inst" update adopt --slot=0 --version=1 --index="$work/store/v1/image.caibx"
  } > "$work/install-v1.log" 2>&1 || { cat "$work/install-v1.log" >&2; exit 1; }

  # 3. The root partition: Debian's tree without /usr's content, /etc and /var empty (pristine
  #    provisions them), except the update state.
  root=$work/root
  mkdir -p "$root"
  tar -C "$root" -xf "$rootfs" --exclude='./usr/*'
  find "$root/etc" "$root/var" -mindepth 1 -delete
  mkdir -p "$root/var/lib/pristine"
  cp -a "$inst/var/lib/pristine/update" "$root/var/lib/pristine/"
  mkfs.ext4 -q -F -L root -d "$root" "$work/root.img" 192M
  "$here/dracut-initrd.sh" "$bin" "$kver" "$work" "$cache/initrd.img" "$base"
  rm -rf "$root" "$base"

  # 4. The disk: GPT, root then the two slots (sfdisk sizes in MiB).
  rootsize=$(stat -c %s "$work/root.img")
  total=$(( (rootsize + 2 * slotsize) / 1048576 + 2 ))
  truncate -s "${total}M" "$cache/disk.img"
  sfdisk -q "$cache/disk.img" <<SF
label: gpt
size=$((rootsize / 1048576))M, type=linux, name=root
size=$((slotsize / 1048576))M, type=8484680C-9521-48C6-9C11-B0720656F69E, name=usr-a
size=$((slotsize / 1048576))M, type=8484680C-9521-48C6-9C11-B0720656F69E, name=usr-b
SF
  put() { # FILE PARTITION
    local start
    start=$(sfdisk -J "$cache/disk.img" | python3 -c "import json,sys; print(json.load(sys.stdin)['partitiontable']['partitions'][$2-1]['start'])")
    dd if="$1" of="$cache/disk.img" bs=512 seek="$start" conv=notrunc,sparse status=none
  }
  put "$work/root.img" 1
  put "$inst/slots/a" 2
  rm -rf "$inst" "$work/root.img"

  # 5. The store disk (read-only in the VM).
  rm -rf "$work/store/v1"
  mkfs.ext4 -q -F -L store -d "$work/store" "$cache/store.img" 400M
  rm -rf "$work"
  touch "$cache/done"
fi
# The test's own copies (the VM writes the disk; another run may replace the cache meanwhile).
cp --sparse=always "$cache/disk.img" "$cache/store.img" "$cache/initrd.img" "$out/"
flock -u 9
t1=$(date +%s)
echo "images $((t1 - t0))" > "$out/times"

# 6. The boots (the store disk read-only).
for n in 1 2 3 4 5; do
  b0=$(date +%s)
  timeout "${PRISTINE_VM_TIMEOUT:-300}" qemu-system-x86_64 -accel "${PRISTINE_VM_ACCEL:-tcg}" -m 1024 -smp 2 \
    -nographic -no-reboot -kernel "$kernel" -initrd "$out/initrd.img" \
    -drive "file=$out/disk.img,format=raw,if=virtio" \
    -drive "file=$out/store.img,format=raw,if=virtio,readonly=on" -device virtio-rng-pci \
    -append "console=ttyS0 panic=-1 loglevel=4 no_timer_check root=/dev/vda1 rootfstype=ext4 rw rd.emergency=poweroff rd.shell=0" \
    > "$out/boot$n.log" 2>&1 || true
  echo "boot$n $(( $(date +%s) - b0 ))" >> "$out/times"
  grep -a -E "PRISTINE-VM|pristine\[|pristine:" "$out/boot$n.log" || true
done
rm -f "$out/disk.img" "$out/store.img" "$out/initrd.img"
echo "total $(( $(date +%s) - t0 ))" >> "$out/times"

#!/usr/bin/env bash
# Prints the path of the cached debootstrapped Debian 12 tree (a tar) the VM tests boot,
# making it on first use: one debootstrap at a time when VM tests run in parallel. The cache
# is $PRISTINE_VM_CACHE (default ~/.cache/pristine-vm).
set -euo pipefail
cache=${PRISTINE_VM_CACHE:-$HOME/.cache/pristine-vm}/bookworm-minbase-udev
mkdir -p "$cache"
mirror=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
[[ -n $mirror ]] || mirror=http://deb.debian.org/debian
exec 9>"$cache.lock"
flock 9
if [[ ! -f $cache/rootfs.tar ]]; then
  rm -rf "$cache/rootfs.tmp"
  debootstrap --variant=minbase --include=systemd-sysv,dbus,udev bookworm "$cache/rootfs.tmp" "$mirror" > "$cache/debootstrap.log" 2>&1 \
    || { tail -n 30 "$cache/debootstrap.log" >&2; exit 1; }
  tar -C "$cache/rootfs.tmp" -cf "$cache/rootfs.tar.tmp" . && mv "$cache/rootfs.tar.tmp" "$cache/rootfs.tar"
  rm -rf "$cache/rootfs.tmp"
fi
echo "$cache/rootfs.tar"

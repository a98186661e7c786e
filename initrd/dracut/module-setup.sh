#!/bin/bash
# dracut module "pristine": runs `pristine provision` on /sysroot in a systemd-based initrd,
# after the root and /usr are mounted and before /sysroot/etc is read (initrd-parse-etc) or
# switched to. Not included unless asked for:
#
#   dracut --add pristine ...            or   add_dracutmodules+=" pristine " in dracut.conf.d
#
# The binary is taken from $PRISTINE_BINARY, else from PATH, and installed as /usr/bin/pristine.
# Its configuration is read from the target (/sysroot/usr/lib/pristine, /sysroot/etc/pristine),
# never from the initrd.

check() {
    require_binaries "${PRISTINE_BINARY:-pristine}" || return 1
    return 255
}

depends() {
    echo systemd
    return 0
}

install() {
    local bin
    bin=${PRISTINE_BINARY:-$(command -v pristine)}
    inst_simple "$bin" /usr/bin/pristine
    inst_simple "$moddir/pristine-provision.service" "$systemdsystemunitdir/pristine-provision.service"
    $SYSTEMCTL -q --root "$initdir" add-wants initrd.target pristine-provision.service
    # A/B /usr updates (only when this system configures [update] slots): the slot is chosen
    # and mounted at /sysroot/usr by `pristine update boot --mount`, which reads its [update]
    # settings from the initrd's own copy (/sysroot/usr is not mounted yet).
    if grep -qs '^slots' /usr/lib/pristine/*.toml /etc/pristine/*.toml; then
        inst_simple "$moddir/pristine-update-boot.service" \
            "$systemdsystemunitdir/pristine-update-boot.service"
        $SYSTEMCTL -q --root "$initdir" add-requires initrd-usr-fs.target pristine-update-boot.service
        inst_multiple -o /usr/lib/pristine/*.toml /etc/pristine/*.toml
    fi
}

installkernel() {
    # dm-verity mappings for /usr, made by pristine itself (no veritysetup in the initrd).
    hostonly='' instmods dm_mod dm_verity
}

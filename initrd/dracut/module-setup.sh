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
}

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
    # settings from the initrd's own copy (/sysroot/usr is not mounted yet). The settings are
    # the system's (/usr/lib/pristine, /etc/pristine), or those of the tree $PRISTINE_SYSROOT
    # when the initrd is built for another system.
    local sysroot=${PRISTINE_SYSROOT:-} f confs=() slot dev
    for f in "$sysroot"/usr/lib/pristine/*.toml "$sysroot"/etc/pristine/*.toml; do
        [[ -f $f ]] && confs+=("$f")
    done
    if ((${#confs[@]})) && grep -qs '^slots' "${confs[@]}"; then
        inst_simple "$moddir/pristine-update-boot.service" \
            "$systemdsystemunitdir/pristine-update-boot.service"
        $SYSTEMCTL -q --root "$initdir" add-requires initrd-usr-fs.target pristine-update-boot.service
        for f in "${confs[@]}"; do
            inst_simple "$f" "${f#"$sysroot"}"
        done
        # The trusted update keys: an incomplete slot completed from [update] boot-source in
        # the initrd is checked against them.
        for f in "$sysroot"/usr/lib/pristine/keys/*.pub; do
            [[ -f $f ]] && inst_simple "$f" "${f#"$sysroot"}"
        done
        # Wait for the slot devices (udev makes /dev/disk/by-* links after the root device may
        # already be there): one Wants=/After= on each slot's device unit. Slots are read from
        # `slots = [...]` lines (one line per array).
        mkdir -p "$initdir$systemdsystemunitdir/pristine-update-boot.service.d"
        {
            echo "[Unit]"
            sed -n 's/^slots *= *\[\(.*\)\].*/\1/p' "${confs[@]}" | tr ',' '\n' | tr -d ' "' |
                while read -r slot; do
                    [[ $slot == /dev/* ]] || continue
                    dev=$(systemd-escape --path --suffix=device "$slot")
                    echo "Wants=$dev"
                    echo "After=$dev"
                done
        } > "$initdir$systemdsystemunitdir/pristine-update-boot.service.d/50-slots.conf"
    fi
}

installkernel() {
    # dm-verity mappings for /usr, made by pristine itself (no veritysetup in the initrd).
    hostonly='' instmods dm_mod dm_verity
}

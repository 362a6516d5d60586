#!/bin/sh
# Kiln's changes to a Debian root file system that boots on its own, from its disk's bootloader with Debian's kernel
# and initramfs: run on the host as a customize hook, with the root directory as $1 and the root partition's UUID as
# $2. The settings of customize.sh without Kiln's kernel modules, agent units and ready marker.
set -eu
root=$1 partuuid=$2 here=$(dirname "$0")

echo kiln > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tkiln\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
# No fsck: every boot starts from a fresh overlay of a clean file system.
printf 'PARTUUID=%s\t/\text4\terrors=remount-ro\t0\t0\n' "$partuuid" > "$root/etc/fstab"
install -m 0644 -D "$here/20-kiln-dhcp.network" "$root/etc/systemd/network/20-kiln-dhcp.network"
install -m 0644 -D "$here/autologin.conf" "$root/etc/systemd/system/serial-getty@.service.d/autologin.conf"
chroot "$root" passwd --delete root >/dev/null
chroot "$root" systemctl enable --quiet systemd-networkd.service
chroot "$root" systemctl mask --quiet $(cat "$here/masked-units")

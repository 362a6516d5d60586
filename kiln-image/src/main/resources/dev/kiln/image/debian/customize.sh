#!/bin/sh
# Kiln's changes to a Debian root file system made by mmdebstrap: run on the host as a customize hook, with the
# root directory as $1 and the kernel's modules tree (lib/modules/<release>) as $2.
set -eu
root=$1 modules=$2 here=$(dirname "$0")

mkdir -p "$root/usr/lib/modules"
cp -a "$modules"/. "$root/usr/lib/modules/"
for release in "$modules"/*; do chroot "$root" depmod "${release##*/}"; done

echo kiln > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tkiln\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
printf '# The root file system is mounted by Kiln'"'"'s initramfs (kiln.root=).\n' > "$root/etc/fstab"
install -m 0644 "$here/kiln-ready.service" "$here/kiln-agent-vsock.service" "$root/etc/systemd/system/"
install -m 0644 -D "$here/20-kiln-dhcp.network" "$root/etc/systemd/network/20-kiln-dhcp.network"
install -m 0644 -D "$here/autologin.conf" "$root/etc/systemd/system/serial-getty@.service.d/autologin.conf"
chroot "$root" passwd --delete root >/dev/null
chroot "$root" systemctl enable --quiet kiln-ready.service kiln-agent-vsock.service systemd-networkd.service
# Units that only slow a test boot down (listed in the README).
chroot "$root" systemctl mask --quiet $(cat "$here/masked-units")

#!/bin/sh
# Kiln guest init, PID 1 of the default image. It must never exit (that panics the kernel), and it avoids
# forks where a builtin does: one fork+exec costs ~5 ms under TCG.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=linux PS1='\w # '
# Milliseconds since boot, from builtins only (the "1" prefix keeps "08" from parsing as octal).
now() { read -r up _ < /proc/uptime; ms=$(( ${up%.*} * 1000 + 1${up#*.} * 10 - 1000 )); }
# Bounded wait step of ~2 ms without a fork: a read that times out on a FIFO nobody writes.
tick() { read -t 0.002 _ <> /etc/kiln/tick; }
mount -a                                  # /etc/fstab: proc, sysfs, devtmpfs, /run, /tmp in one process
echo kiln > /proc/sys/kernel/hostname

# Coldplug, as udev would do it but only for devices that exist: first the virtio transports (mmio, pci) for
# the buses' devices, then the drivers for the virtio devices found there. Loading one module costs 10-50 ms
# under TCG, so loading every shipped module would cost more than the rest of userspace's way to ready.
modaliases() { aliases=; for f; do [ -r "$f" ] && read -r a < "$f" && aliases="$aliases $a"; done; }
modaliases /sys/bus/platform/devices/*/modalias /sys/bus/pci/devices/*/modalias
set -f; [ -n "$aliases" ] && modprobe -qa $aliases; set +f
modaliases /sys/bus/virtio/devices/*/modalias
set -f; [ -n "$aliases" ] && modprobe -qa $aliases; set +f

# With console=hvc0 and no serial port the kernel had no console to give init: take the virtio console
# once its driver (loaded just above) has made it.
if ! [ -e /proc/self/fd/1 ]; then
    now; end=$((ms + 5000))
    until [ -c /dev/hvc0 ]; do now; [ "$ms" -lt "$end" ] || break; tick; done
    [ -c /dev/hvc0 ] && exec </dev/hvc0 >/dev/hvc0 2>&1
fi

agent=virtio-serial port=1024 addr= root=
read -r cmdline < /proc/cmdline
set -f
for a in $cmdline; do
    case $a in
        kiln.agent=*) agent=${a#*=} ;;
        kiln.agent_port=*) port=${a#*=} ;;
        kiln.ip=*) addr=${a#*=} ;;
        kiln.root=*) root=${a#*=} ;;
    esac
done
set +f

# kiln.root=serial:NAME (the virtio disk with that serial, as QEMU sets it) or kiln.root=DEVICE (Firecracker, whose
# disks come in a set order): the guest's own root file system. Mount it and hand over to its init for good.
if [ -n "$root" ]; then
    find_root() {
        case $root in
            serial:*)
                dev=
                for s in /sys/block/vd*/serial; do
                    v=; read -r v < "$s" 2>/dev/null # the serial has no newline: read "fails" yet sets v
                    [ "$v" = "${root#serial:}" ] && { d=${s%/serial}; dev=/dev/${d##*/}; }
                done
                [ -n "$dev" ] && [ -b "$dev" ] ;;
            *) dev=$root; [ -b "$dev" ] ;;
        esac
    }
    now; end=$((ms + 10000))
    until find_root; do now; [ "$ms" -lt "$end" ] || break; tick; done
    if find_root && mkdir -p /newroot && mount -t ext4 -o rw "$dev" /newroot; then
        umount /tmp; for m in dev proc sys run; do mount --move /$m /newroot/$m; done
        exec switch_root /newroot /sbin/init
    fi
    # Giving up resets the guest, which ends the VMM (-no-reboot; Firecracker exits on a reboot): the start fails at
    # once, with this line last on the console (a panic's backtrace would bury it).
    echo "kiln-init: cannot mount the root file system kiln.root=$root (disks: $(ls /sys/block)); giving up"
    reboot -f
    exit 1
fi
ip link set lo up

# kiln.ip=ADDRESS/PREFIX[,GATEWAY]: a static address on eth0 (user-mode networking, a cable, a switch).
if [ -n "$addr" ]; then
    gw=; case $addr in *,*) gw=${addr#*,}; addr=${addr%%,*} ;; esac
    { ip addr add "$addr" dev eth0 && ip link set eth0 up && { [ -z "$gw" ] || ip route add default via "$gw"; }; } ||
        echo "kiln-init: cannot give eth0 the address $addr${gw:+ via $gw}"
fi

bound() { for d in /sys/bus/virtio/drivers/$1/virtio*; do [ -e "$d" ] && return 0; done; return 1; }
# Whether process $1 has file $2 open (tests only, no fork).
holds() { for f in /proc/$1/fd/*; do [ "$f" -ef "$2" ] && return 0; done; return 1; }
# virtio-serial ports and their names arrive asynchronously after virtio_console binds its device.
agent_port() {
    for n in /sys/class/virtio-ports/*/name; do
        read -r v < "$n" 2>/dev/null && [ "$v" = org.qemu.guest_agent.0 ] || continue
        d=${n%/name}; dev=/dev/${d##*/}
        [ -c "$dev" ] && return 0
    done
    return 1
}

case $agent in
    vsock)
        # CID_ANY: the listener works whatever CID the VMM gave this guest.
        if bound vmw_vsock_virtio_transport; then
            qemu-ga -m vsock-listen -p "4294967295:$port" -t /run -l /run/qemu-ga.log &
        else
            echo "kiln-init: no virtio vsock device; qemu-ga not started"
        fi ;;
    virtio-serial)
        if bound virtio_console; then
            now; end=$((ms + 5000))
            until agent_port; do now; [ "$ms" -lt "$end" ] || break; tick; done
        fi
        if agent_port; then
            qemu-ga -m virtio-serial -p "$dev" -t /run -l /run/qemu-ga.log &
            # The ready marker says the agent listens: wait (at most 5 s) until qemu-ga holds its port open.
            agent_pid=$!; now; end=$((ms + 5000))
            until holds "$agent_pid" "$dev"; do now; [ "$ms" -lt "$end" ] || break; tick; done
        else
            echo "kiln-init: no virtio-serial port named org.qemu.guest_agent.0; qemu-ga not started"
        fi ;;
    *) echo "kiln-init: unknown kiln.agent=$agent (want virtio-serial or vsock); qemu-ga not started" ;;
esac

echo KILN-READY

# A shell on the console for expect-style use, respawned when it exits.
while :; do setsid cttyhack sh; done

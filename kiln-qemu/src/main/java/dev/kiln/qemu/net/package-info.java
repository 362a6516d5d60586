/**
 * Networks between machines, with faults on demand: a {@link dev.kiln.qemu.net.Cable} joins two machines directly
 * (a socket pair), a {@link dev.kiln.qemu.net.Network} is a switch Kiln runs that many machines plug into and that a
 * test can partition, slow down, make lossy or unplug, port by port.
 *
 * <p>Both speak QEMU's {@code -netdev socket} stream framing: each Ethernet frame (without FCS) preceded by its
 * length as 4 bytes big-endian.
 */
package dev.kiln.qemu.net;

package dev.kiln.firecracker.net;

import dev.kiln.KilnException;

import java.net.Inet4Address;
import java.net.InetAddress;
import java.net.UnknownHostException;

/**
 * Hands out small subnets of a private range, one per tap device, never the same twice: each
 * {@link #next()} is a fresh /30 (by default) whose first usable address is the host's (the tap) and the
 * second the guest's. Thread-safe; exhausting the range is an error, never a reuse.
 */
public final class Ipv4Allocator {
    /** One allocated subnet. */
    public record Subnet(Inet4Address network, Inet4Address host, Inet4Address guest, int prefixLength) {
        /** {@code 192.168.0.1/30}: the host side, as {@code ip addr add} takes it. */
        public String hostCidr() {
            return host.getHostAddress() + "/" + prefixLength;
        }

        /** The guest's MAC derived from its address ({@link Mac#fromIp}), so the guest can configure itself from it. */
        public String guestMac() {
            return Mac.fromIp(guest);
        }
    }

    private final int base;
    private final int size;
    private final int prefixLength;
    private int nextOffset;

    /** /30 subnets of 192.168.0.0/16. */
    public Ipv4Allocator() {
        this("192.168.0.0", 16, 30);
    }

    public Ipv4Allocator(String rangeNetwork, int rangePrefix, int subnetPrefix) {
        if (rangePrefix < 8 || rangePrefix > 30 || subnetPrefix < rangePrefix || subnetPrefix > 30) {
            throw new IllegalArgumentException("need 8 <= range prefix (" + rangePrefix + ") <= subnet prefix (" + subnetPrefix + ") <= 30");
        }
        int network = toInt(parse(rangeNetwork));
        int mask = rangePrefix == 0 ? 0 : -1 << (32 - rangePrefix);
        if ((network & ~mask) != 0) throw new IllegalArgumentException(rangeNetwork + " is not the network address of a /" + rangePrefix);
        this.base = network;
        this.size = 1 << (32 - rangePrefix);
        this.prefixLength = subnetPrefix;
    }

    public synchronized Subnet next() {
        int block = 1 << (32 - prefixLength);
        if (nextOffset + block > size) {
            throw new KilnException("the range " + fromInt(base).getHostAddress() + "/" + (32 - Integer.numberOfTrailingZeros(size))
                    + " has no /" + prefixLength + " left");
        }
        int network = base + nextOffset;
        nextOffset += block;
        return new Subnet(fromInt(network), fromInt(network + 1), fromInt(network + 2), prefixLength);
    }

    static Inet4Address parse(String dotted) {
        try {
            if (!dotted.matches("\\d{1,3}(\\.\\d{1,3}){3}")) throw new IllegalArgumentException("not an IPv4 address: " + dotted);
            return (Inet4Address) InetAddress.getByName(dotted);
        } catch (UnknownHostException e) {
            throw new IllegalArgumentException("not an IPv4 address: " + dotted, e);
        }
    }

    static int toInt(Inet4Address a) {
        byte[] b = a.getAddress();
        return (b[0] & 0xff) << 24 | (b[1] & 0xff) << 16 | (b[2] & 0xff) << 8 | (b[3] & 0xff);
    }

    static Inet4Address fromInt(int v) {
        try {
            return (Inet4Address) InetAddress.getByAddress(new byte[] {(byte) (v >>> 24), (byte) (v >>> 16), (byte) (v >>> 8), (byte) v});
        } catch (UnknownHostException e) {
            throw new IllegalStateException(e);
        }
    }
}

package dev.kiln.qemu.net;

import java.util.HexFormat;
import java.util.concurrent.atomic.AtomicInteger;

/** Hands out distinct MAC addresses for the NICs Kiln wires, so two machines on one segment never clash. */
final class MacAddresses {
    /** 02 = locally administered and unicast; 6b:6e = "kn" (Kiln network); then a count within this JVM. */
    private static final long PREFIX = 0x02_6b_6e_000000L;
    private static final AtomicInteger NEXT = new AtomicInteger(1);

    private MacAddresses() {}

    static String next() {
        return format(PREFIX | (NEXT.getAndIncrement() & 0xffffffL));
    }

    /** "02:6b:6e:00:00:01" for the 48-bit address in the low bits of {@code mac}. */
    static String format(long mac) {
        StringBuilder s = new StringBuilder(17);
        HexFormat hex = HexFormat.of();
        for (int shift = 40; shift >= 0; shift -= 8) {
            if (shift != 40) s.append(':');
            s.append(hex.toHexDigits((byte) (mac >>> shift)));
        }
        return s.toString();
    }
}

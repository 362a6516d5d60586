package dev.kiln.qemu.net;

import dev.kiln.os.Fd;
import dev.kiln.os.Posix;

import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;

/** A NIC driven from Java on a port's or cable's socket: sends and receives length-prefixed frames. */
final class TestNic {
    static final long BROADCAST = 0xffff_ffff_ffffL;
    private static final short ETHERTYPE = (short) 0x88b5; // IEEE local experimental

    final Fd fd;
    final long mac;
    private final byte[] buffer = new byte[4 + Network.MAX_FRAME_BYTES + 65536];
    private int filled;
    private boolean eof;

    TestNic(Fd fd, String mac) {
        this.fd = fd;
        this.mac = parse(mac);
    }

    TestNic(Port port) {
        this(port.fd(), port.mac());
    }

    static long parse(String mac) {
        return HexFormat.fromHexDigitsToLong(mac.replace(":", ""));
    }

    /** An Ethernet frame to {@code destination} from this NIC carrying {@code payload}. */
    byte[] frame(long destination, byte[] payload) {
        ByteBuffer b = ByteBuffer.allocate(14 + payload.length);
        b.putShort((short) (destination >>> 32)).putInt((int) destination);
        b.putShort((short) (mac >>> 32)).putInt((int) mac);
        b.putShort(ETHERTYPE).put(payload);
        return b.array();
    }

    void send(long destination, byte[] payload) {
        sendFrame(frame(destination, payload));
    }

    void send(long destination, String payload) {
        send(destination, payload.getBytes());
    }

    void sendFrame(byte[] frame) {
        sendRaw(framed(frame));
    }

    static byte[] framed(byte[] frame) {
        return ByteBuffer.allocate(4 + frame.length).putInt(frame.length).put(frame).array();
    }

    void sendRaw(byte[] bytes) {
        Posix.writeFully(fd, bytes, 0, bytes.length);
    }

    /** The next whole frame, or null if none came within {@code timeout}. */
    byte[] receive(Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            if (filled >= 4) {
                int length = ByteBuffer.wrap(buffer, 0, 4).getInt();
                if (length < 0 || length > Network.MAX_FRAME_BYTES) throw new AssertionError("bad frame length " + length);
                if (filled >= 4 + length) {
                    byte[] frame = Arrays.copyOfRange(buffer, 4, 4 + length);
                    System.arraycopy(buffer, 4 + length, buffer, 0, filled - 4 - length);
                    filled -= 4 + length;
                    return frame;
                }
            }
            if (eof) return null;
            long left = deadline - System.nanoTime();
            if (left <= 0 || !Posix.awaitReadable(fd, Duration.ofNanos(left))) return null;
            int n = Posix.read(fd, buffer, filled, buffer.length - filled);
            if (n == 0) eof = true;
            filled += n;
        }
    }

    /** The payload of the next frame as text, or null. */
    String receiveText(Duration timeout) {
        byte[] f = receive(timeout);
        return f == null ? null : new String(f, 14, f.length - 14);
    }

    /** Every frame that arrives until none has come for {@code quiet}. */
    List<byte[]> drain(Duration quiet) {
        List<byte[]> frames = new ArrayList<>();
        for (byte[] f; (f = receive(quiet)) != null; ) frames.add(f);
        return frames;
    }

    /** Whether the switch closed its end (end of file) within {@code timeout}, after any frames still buffered. */
    boolean awaitEndOfFile(Duration timeout) {
        drain(timeout);
        return eof;
    }
}

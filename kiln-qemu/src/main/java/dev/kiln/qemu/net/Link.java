package dev.kiln.qemu.net;

import dev.kiln.os.Fd;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/** The switch's side of one port: its socket, buffers, faults and counters. Confined to the switch's thread. */
final class Link {
    final int id;
    final String name;
    final Fd fd;
    final int fdNumber;
    private Arena arena;
    MemorySegment input; // bytes read but not yet forwarded: at most one partial frame after each pass
    long filled;
    OutputQueue out;
    int pollIndex = -1;

    boolean connected = true;
    String disconnectReason;

    boolean up = true;
    double loss;
    long delayNanos;

    long framesIn, bytesIn, framesOut, bytesOut, droppedByFault, droppedQueueFull;

    Link(int id, String name, Fd fd, long inputBytes, long queueBytes) {
        this.id = id;
        this.name = name;
        this.fd = fd;
        this.fdNumber = fd.number();
        arena = Arena.ofConfined();
        input = arena.allocate(inputBytes, 8);
        out = new OutputQueue(arena.allocate(queueBytes, 8));
    }

    /** Lets go of the socket and the buffers; the counters stay. */
    void release(String reason) {
        connected = false;
        disconnectReason = reason;
        framesOut = out.framesSent();
        bytesOut = out.bytesSent();
        try {
            fd.close();
        } finally {
            arena.close();
            input = null;
            out = null;
        }
    }

    PortStats stats() {
        return new PortStats(framesIn, bytesIn, connected ? out.framesSent() : framesOut, connected ? out.bytesSent() : bytesOut,
                droppedByFault, droppedQueueFull, connected, disconnectReason);
    }

    /** The faults in force, e.g. "down, loss 0.5, delay 20 ms", or "" when none. */
    String faults() {
        StringBuilder s = new StringBuilder();
        if (!up) s.append("down");
        if (loss > 0) s.append(s.isEmpty() ? "" : ", ").append("loss ").append(loss);
        if (delayNanos > 0) s.append(s.isEmpty() ? "" : ", ").append("delay ").append(delayNanos / 1e6).append(" ms");
        return s.toString();
    }
}

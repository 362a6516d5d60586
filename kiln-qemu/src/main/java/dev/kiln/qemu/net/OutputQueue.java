package dev.kiln.qemu.net;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * The frames waiting to be written to one port, already framed (length prefix and frame) in a ring of native
 * memory so that one send can carry many of them. Each frame has a due time: frames are released for sending in
 * order once due, which is how delays keep order. Bounded: a frame that does not fit is refused, never waited for.
 * Confined to the switch's thread.
 */
final class OutputQueue {
    private static final ValueLayout.OfInt LENGTH = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    private final MemorySegment ring;
    private final long capacity;
    private long head;     // ring index of the first byte not yet sent
    private long size;     // bytes queued, sent or not released yet
    private long released; // bytes from head that may be sent now

    // Every queued frame's wire size and due time, oldest first: frame boundaries are needed to drop whole frames
    // and to count frames sent, due times to release them.
    private int[] wireBytes = new int[64];
    private long[] due = new long[64];
    private int first, frames, releasedFrames;
    private long sentOfFirst; // bytes of the first frame already sent
    private long lastDue = Long.MIN_VALUE;

    private long framesSent, bytesSent;

    OutputQueue(MemorySegment ring) {
        this.ring = ring;
        this.capacity = ring.byteSize();
    }

    /**
     * Queues {@code length} bytes of {@code from} at {@code offset} as one frame, to be released at {@code dueNanos}
     * (or when the frame before it is, if later). Returns false, queuing nothing, when it does not fit.
     */
    boolean offer(MemorySegment from, long offset, int length, long dueNanos) {
        int wire = 4 + length;
        if (size + wire > capacity) return false;
        long tail = wrap(head + size);
        if (tail + 4 <= capacity) {
            ring.set(LENGTH, tail, length);
        } else {
            for (int i = 0; i < 4; i++) ring.set(ValueLayout.JAVA_BYTE, wrap(tail + i), (byte) (length >>> (24 - 8 * i)));
        }
        long at = wrap(tail + 4);
        long firstPart = Math.min(length, capacity - at);
        MemorySegment.copy(from, offset, ring, at, firstPart);
        if (firstPart < length) MemorySegment.copy(from, offset + firstPart, ring, 0, length - firstPart);
        size += wire;

        if (frames == wireBytes.length) grow();
        int slot = (first + frames) % wireBytes.length;
        wireBytes[slot] = wire;
        due[slot] = lastDue = Math.max(dueNanos, lastDue);
        frames++;
        return true;
    }

    /** Releases the frames due by {@code now}; returns when the next one is due, or Long.MAX_VALUE if none waits. */
    long release(long now) {
        while (releasedFrames < frames) {
            int slot = (first + releasedFrames) % wireBytes.length;
            if (due[slot] - now > 0) return due[slot];
            released += wireBytes[slot];
            releasedFrames++;
        }
        return Long.MAX_VALUE;
    }

    boolean hasReleased() {
        return released > 0;
    }

    boolean isEmpty() {
        return frames == 0;
    }

    /** The released bytes that lie contiguous in the ring, to send next. */
    MemorySegment sendable() {
        return ring.asSlice(head, Math.min(released, capacity - head));
    }

    /** Takes note that the first {@code n} bytes of {@link #sendable()} were sent. */
    void sent(long n) {
        head = wrap(head + n);
        size -= n;
        released -= n;
        sentOfFirst += n;
        while (frames > 0 && sentOfFirst >= wireBytes[first]) {
            sentOfFirst -= wireBytes[first];
            framesSent++;
            bytesSent += wireBytes[first] - 4;
            first = (first + 1) % wireBytes.length;
            frames--;
            releasedFrames--;
        }
    }

    /**
     * Drops every queued frame except one already partly sent (cutting it would break the framing); returns how
     * many were dropped.
     */
    int dropQueued() {
        boolean keepFirst = sentOfFirst > 0;
        int dropped = keepFirst ? frames - 1 : frames;
        if (keepFirst) {
            long rest = wireBytes[first] - sentOfFirst;
            size = rest;
            released = rest;
            frames = 1;
            releasedFrames = 1;
        } else {
            head = 0;
            size = released = 0;
            first = frames = releasedFrames = 0;
        }
        // Dropped frames must not hold back later ones; a kept partial frame is being sent already.
        lastDue = Long.MIN_VALUE;
        return dropped;
    }

    long framesSent() {
        return framesSent;
    }

    long bytesSent() {
        return bytesSent;
    }

    private long wrap(long index) {
        return index >= capacity ? index - capacity : index;
    }

    private void grow() {
        int n = wireBytes.length;
        int[] w = new int[n * 2];
        long[] d = new long[n * 2];
        for (int i = 0; i < frames; i++) {
            w[i] = wireBytes[(first + i) % n];
            d[i] = due[(first + i) % n];
        }
        wireBytes = w;
        due = d;
        first = 0;
    }
}

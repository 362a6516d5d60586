package dev.kiln.qemu.net;

import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;

class OutputQueueTest {
    @Test
    void bytesComeOutFramedAndWholeAcrossTheRingsWrapInAnySendSizes() {
        Random random = new Random(3);
        try (Arena arena = Arena.ofConfined()) {
            OutputQueue q = new OutputQueue(arena.allocate(101)); // odd size: prefixes and frames straddle the end
            ByteArrayOutputStream expected = new ByteArrayOutputStream(), got = new ByteArrayOutputStream();
            int offered = 0;
            for (int round = 0; round < 2000; round++) {
                byte[] frame = new byte[14 + random.nextInt(40)];
                random.nextBytes(frame);
                if (q.offer(offHeap(arena, frame), 0, frame.length, 0)) {
                    offered++;
                    expected.write(frame.length >>> 24);
                    expected.write(frame.length >>> 16);
                    expected.write(frame.length >>> 8);
                    expected.write(frame.length);
                    expected.writeBytes(frame);
                }
                q.release(0);
                if (random.nextInt(3) == 0) drainSome(q, got, random);
            }
            while (q.hasReleased()) drainSome(q, got, random);
            assertThat(q.isEmpty()).isTrue();
            assertThat(got.toByteArray()).isEqualTo(expected.toByteArray());
            assertThat(q.framesSent()).isEqualTo(offered);
        }
    }

    @Test
    void framesAreReleasedInOrderOnlyOnceDue() {
        try (Arena arena = Arena.ofConfined()) {
            OutputQueue q = new OutputQueue(arena.allocate(1000));
            byte[] frame = new byte[20];
            q.offer(offHeap(arena, frame), 0, 20, 500);
            q.offer(offHeap(arena, frame), 0, 20, 100); // due earlier, but must wait for the first
            assertThat(q.release(99)).isEqualTo(500);
            assertThat(q.hasReleased()).isFalse();
            assertThat(q.release(500)).isEqualTo(Long.MAX_VALUE);
            assertThat(q.sendable().byteSize()).isEqualTo(48);
        }
    }

    @Test
    void droppingKeepsAHalfSentFrameSoTheFramingStaysWhole() {
        try (Arena arena = Arena.ofConfined()) {
            OutputQueue q = new OutputQueue(arena.allocate(1000));
            byte[] frame = new byte[20];
            for (int i = 0; i < 3; i++) q.offer(offHeap(arena, frame), 0, 20, 0);
            q.release(0);
            q.sent(10);
            assertThat(q.dropQueued()).isEqualTo(2);
            assertThat(q.sendable().byteSize()).isEqualTo(14);
            q.sent(14);
            assertThat(q.isEmpty()).isTrue();
            assertThat(q.framesSent()).isEqualTo(1);
            q.offer(offHeap(arena, frame), 0, 20, 0);
            assertThat(q.dropQueued()).isEqualTo(1);
            assertThat(q.isEmpty()).isTrue();
            assertThat(q.offer(offHeap(arena, new byte[996]), 0, 996, 0)).isTrue();
            assertThat(q.offer(offHeap(arena, frame), 0, 14, 0)).as("full").isFalse();
        }
    }

    private static void drainSome(OutputQueue q, ByteArrayOutputStream to, Random random) {
        if (!q.hasReleased()) return;
        MemorySegment s = q.sendable();
        long n = 1 + random.nextInt((int) s.byteSize());
        to.writeBytes(s.asSlice(0, n).toArray(ValueLayout.JAVA_BYTE));
        q.sent(n);
    }

    private static MemorySegment offHeap(Arena arena, byte[] bytes) {
        MemorySegment s = arena.allocate(Math.max(1, bytes.length));
        MemorySegment.copy(bytes, 0, s, ValueLayout.JAVA_BYTE, 0, bytes.length);
        return s;
    }
}

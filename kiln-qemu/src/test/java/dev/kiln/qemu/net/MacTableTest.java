package dev.kiln.qemu.net;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;

class MacTableTest {
    private static final long STEP = 0x1_0000_0001L; // spreads keys over both halves of the address

    @Test
    void learnsMovesForgetsAndGrows() {
        MacTable<String> t = new MacTable<>();
        t.put(0L, "a"); // address zero is a valid key
        assertThat(t.get(0L)).isEqualTo("a");
        for (long i = 1; i <= 5000; i++) t.put(i * STEP, i % 2 == 0 ? "a" : "b");
        assertThat(t.size()).isEqualTo(5001);
        assertThat(t.get(2 * STEP)).isEqualTo("a");
        assertThat(t.get(3 * STEP)).isEqualTo("b");
        t.put(3 * STEP, "a");
        assertThat(t.get(3 * STEP)).as("a station that moved").isEqualTo("a");
        t.removeAll("b");
        assertThat(t.get(5 * STEP)).isNull();
        assertThat(t.get(3 * STEP)).isEqualTo("a");
        assertThat(t.size()).as("0, the evens and 3").isEqualTo(2502);
        assertThat(t.get(0xabcdefL)).isNull();
    }

    @Test
    void aFullTableStartsOverInsteadOfGrowingWithoutBound() {
        MacTable<String> t = new MacTable<>();
        for (long i = 0; i < 70_000; i++) t.put(i, "p");
        assertThat(t.size()).isLessThanOrEqualTo(1 << 16);
        assertThat(t.get(69_999)).isEqualTo("p");
    }
}

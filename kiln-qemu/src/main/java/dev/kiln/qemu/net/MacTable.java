package dev.kiln.qemu.net;

import java.util.Arrays;

/**
 * The switch's learned addresses: which port a unicast MAC was last seen on. Open addressing on primitive keys,
 * since it is looked up for every frame. Bounded: when full (a guest spraying random source addresses) it forgets
 * everything and relearns, and unknown addresses are flooded meanwhile, as a hardware switch does.
 */
final class MacTable<T> {
    private static final int MAX_ENTRIES = 1 << 16;
    private static final long PRESENT = 1L << 48; // marks a used slot, so address 0 can be stored

    private long[] keys = new long[64];
    private Object[] values = new Object[64];
    private int count;

    @SuppressWarnings("unchecked")
    T get(long mac) {
        long key = mac | PRESENT;
        int mask = keys.length - 1;
        for (int i = slot(key, mask); keys[i] != 0; i = (i + 1) & mask) {
            if (keys[i] == key) return (T) values[i];
        }
        return null;
    }

    void put(long mac, T port) {
        long key = mac | PRESENT;
        int mask = keys.length - 1;
        int i = slot(key, mask);
        for (; keys[i] != 0; i = (i + 1) & mask) {
            if (keys[i] == key) {
                values[i] = port;
                return;
            }
        }
        if (count >= MAX_ENTRIES) {
            clear();
            put(mac, port);
            return;
        }
        keys[i] = key;
        values[i] = port;
        if (++count * 2 > keys.length) rehash(keys.length * 2, null);
    }

    /** Forgets every address learned on {@code port}. */
    void removeAll(T port) {
        rehash(keys.length, port);
    }

    void clear() {
        Arrays.fill(keys, 0);
        Arrays.fill(values, null);
        count = 0;
    }

    int size() {
        return count;
    }

    private void rehash(int newLength, T without) {
        long[] oldKeys = keys;
        Object[] oldValues = values;
        keys = new long[newLength];
        values = new Object[newLength];
        count = 0;
        int mask = newLength - 1;
        for (int j = 0; j < oldKeys.length; j++) {
            if (oldKeys[j] == 0 || oldValues[j] == without) continue;
            int i = slot(oldKeys[j], mask);
            while (keys[i] != 0) i = (i + 1) & mask;
            keys[i] = oldKeys[j];
            values[i] = oldValues[j];
            count++;
        }
    }

    private static int slot(long key, int mask) {
        long h = key * 0x9E3779B97F4A7C15L;
        return (int) (h >>> 40) & mask;
    }
}

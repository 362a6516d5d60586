package dev.kiln.os;

import dev.kiln.KilnException;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.util.BitSet;
import java.util.Set;
import java.util.TreeSet;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * CPU affinity of a thread (Linux {@code sched_setaffinity}/{@code sched_getaffinity}), e.g. to pin a VMM's
 * vCPU threads. {@code tid} is a kernel thread id ({@code /proc/PID/task/TID}); a process id names its main thread.
 */
public final class Affinity {
    /** glibc's cpu_set_t: 1024 CPUs. */
    private static final int SET_BYTES = 128;
    private static final MethodHandle SET = Libc.withErrno("sched_setaffinity", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG, ADDRESS));
    private static final MethodHandle GET = Libc.withErrno("sched_getaffinity", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG, ADDRESS));

    private Affinity() {}

    /** Lets thread {@code tid} run only on {@code cpus}. */
    public static void set(long tid, Set<Integer> cpus) {
        if (cpus.isEmpty()) throw new IllegalArgumentException("an affinity needs at least one CPU");
        int t = checkTid(tid);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment mask = arena.allocate(SET_BYTES, 8);
            for (int cpu : cpus) {
                if (cpu < 0 || cpu >= SET_BYTES * 8) throw new IllegalArgumentException("CPU " + cpu + " is outside 0.." + (SET_BYTES * 8 - 1));
                long at = cpu / 8;
                mask.set(JAVA_BYTE, at, (byte) (mask.get(JAVA_BYTE, at) | 1 << (cpu % 8)));
            }
            Libc.check(Libc.call(state -> (int) SET.invokeExact(state, t, (long) SET_BYTES, mask)),
                    "sched_setaffinity(tid " + tid + ", CPUs " + cpus + ")");
        }
    }

    /** The CPUs thread {@code tid} may run on. */
    public static Set<Integer> get(long tid) {
        int t = checkTid(tid);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment mask = arena.allocate(SET_BYTES, 8);
            Libc.check(Libc.call(state -> (int) GET.invokeExact(state, t, (long) SET_BYTES, mask)), "sched_getaffinity(tid " + tid + ")");
            BitSet bits = BitSet.valueOf(mask.toArray(JAVA_BYTE));
            Set<Integer> cpus = new TreeSet<>();
            bits.stream().forEach(cpus::add);
            return cpus;
        }
    }

    private static int checkTid(long tid) {
        if (tid <= 0 || tid > Integer.MAX_VALUE) throw new KilnException("not a thread id: " + tid);
        return (int) tid;
    }
}

package dev.kiln.bench;

import dev.kiln.qemu.internal.NetworkEnds;
import dev.kiln.qemu.net.Network;
import dev.kiln.qemu.net.Port;
import dev.kiln.qemu.net.PortStats;
import dev.kiln.os.Fd;
import dev.kiln.os.Poller;
import dev.kiln.os.Posix;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

/**
 * The cost of Kiln's switch ({@link Network}) against its peer, a direct socket pair (what a {@code Cable} is),
 * with Java on both ends speaking QEMU's socket framing:
 * <ul>
 * <li>throughput: one thread sends frames, keeping at most {@link #WINDOW_BYTES} in flight (less than the switch's
 *     output queue, so a reader that falls behind slows the sender instead of losing frames), another reads and
 *     counts them: frames delivered per second, and the share dropped (expected 0);
 * <li>latency: one thread sends a frame to the other port, reads it there, sends it back and reads it again;
 *     the round trip's median against the same over a socket pair.
 * </ul>
 *
 * <p>Usage: {@code SwitchBenchmark [runs] [seconds per throughput run]}; medians over the runs.
 */
public final class SwitchBenchmark {
    private static final ValueLayout.OfInt BE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final int[] FRAME_SIZES = {64, 1514};
    private static final int ROUND_TRIPS = 20_000;
    /** Half the switch's default 1 MiB output queue. */
    private static final long WINDOW_BYTES = 512 * 1024;

    public static void main(String[] args) throws Exception {
        int runs = args.length > 0 ? Integer.parseInt(args[0]) : 5;
        double seconds = args.length > 1 ? Double.parseDouble(args[1]) : 2;
        System.out.printf(Locale.ROOT, "host: %d cores, kernel %s; %d runs, %.1f s per throughput run%n",
                Runtime.getRuntime().availableProcessors(), Files.readString(Path.of("/proc/sys/kernel/osrelease")).strip(),
                runs, seconds);

        for (int size : FRAME_SIZES) {
            List<Double> viaSwitch = new ArrayList<>(), direct = new ArrayList<>(), dropped = new ArrayList<>();
            throughputViaSwitch(size, 0.5); // warm-up, not counted
            throughputDirect(size, 0.5);
            for (int run = 0; run < runs; run++) {
                double[] r = throughputViaSwitch(size, seconds);
                viaSwitch.add(r[0]);
                dropped.add(r[1]);
                direct.add(throughputDirect(size, seconds));
            }
            System.out.printf(Locale.ROOT, "%d-byte frames: switch %s frames/s (%.1f MB/s), dropped %.2f%%; "
                            + "socket pair %s frames/s; ratio switch/pair %.2f%n",
                    size, thousands(median(viaSwitch)), median(viaSwitch) * size / 1e6, median(dropped),
                    thousands(median(direct)), median(viaSwitch) / median(direct));
            System.out.printf(Locale.ROOT, "  switch runs: %s%n  pair runs:   %s%n", thousands(viaSwitch), thousands(direct));
        }

        for (int size : FRAME_SIZES) {
            List<Double> viaSwitch = new ArrayList<>(), direct = new ArrayList<>();
            roundTripViaSwitch(size, ROUND_TRIPS / 4); // warm-up
            roundTripDirect(size, ROUND_TRIPS / 4);
            for (int run = 0; run < runs; run++) {
                viaSwitch.add(roundTripViaSwitch(size, ROUND_TRIPS));
                direct.add(roundTripDirect(size, ROUND_TRIPS));
            }
            System.out.printf(Locale.ROOT, "%d-byte round trip (two hops): switch %.1f µs, socket pair %.1f µs; "
                            + "the switch adds %.1f µs per hop%n",
                    size, median(viaSwitch), median(direct), (median(viaSwitch) - median(direct)) / 2);
        }
    }

    /** Frames per second delivered from port a to port b, and the percentage the switch dropped. */
    private static double[] throughputViaSwitch(int size, double seconds) throws Exception {
        try (Network net = Network.builder().name("bench").create()) {
            Port a = net.port("a"), b = net.port("b");
            long macA = mac(a), macB = mac(b);
            learn(NetworkEnds.socket(b), macA, macB, NetworkEnds.socket(a)); // so a's frames go to b alone, not flooded
            double rate = pump(NetworkEnds.socket(a), NetworkEnds.socket(b), frame(size, macB, macA), seconds);
            PortStats in = a.stats(), out = b.stats();
            double dropped = out.droppedQueueFull() * 100.0 / Math.max(1, in.framesIn() - 1);
            return new double[] {rate, dropped};
        }
    }

    private static double throughputDirect(int size, double seconds) throws Exception {
        Fd[] pair = Posix.socketPair();
        try (Fd x = pair[0]; Fd y = pair[1]) {
            return pump(x, y, frame(size, 2, 4), seconds);
        }
    }

    /**
     * Sends {@code frame} on {@code from} from one thread, a window's worth ahead of what arrived, while another
     * counts the frames arriving on {@code to}; returns frames received per second over the middle of the run.
     */
    private static double pump(Fd from, Fd to, byte[] frame, double seconds) throws Exception {
        int wire = 4 + frame.length;
        AtomicBoolean stopSending = new AtomicBoolean(), stopReceiving = new AtomicBoolean();
        AtomicLong bytesReceived = new AtomicLong();
        Thread sender = Thread.ofPlatform().name("bench-send").start(() -> {
            try (Poller io = new Poller(); Arena arena = Arena.ofConfined()) {
                int batch = Math.max(1, 64 * 1024 / wire);
                MemorySegment burst = arena.allocate((long) batch * wire);
                for (int i = 0; i < batch; i++) {
                    burst.set(BE_INT, (long) i * wire, frame.length);
                    MemorySegment.copy(frame, 0, burst, ValueLayout.JAVA_BYTE, (long) i * wire + 4, frame.length);
                }
                int fd = from.number();
                long sent = 0;
                while (!stopSending.get()) {
                    if (sent - bytesReceived.get() > WINDOW_BYTES - burst.byteSize()) {
                        LockSupport.parkNanos(20_000);
                        continue;
                    }
                    sent += burst.byteSize();
                    for (long done = 0; done < burst.byteSize(); ) {
                        long n = io.send(fd, burst.asSlice(done));
                        if (n < 0) throw new IllegalStateException("send: " + Poller.describe((int) -n));
                        done += n;
                    }
                }
            }
        });
        Thread receiver = Thread.ofPlatform().name("bench-receive").start(() -> {
            try (Poller io = new Poller(); Arena arena = Arena.ofConfined()) {
                MemorySegment buffer = arena.allocate(256 * 1024);
                int fd = to.number();
                io.add(fd, Poller.IN);
                while (!stopReceiving.get()) {
                    if (io.poll(50) == 0) continue;
                    long n = io.read(fd, buffer);
                    if (n <= 0) throw new IllegalStateException("read: " + (n == 0 ? "end of file" : Poller.describe((int) -n)));
                    bytesReceived.addAndGet(n);
                }
            }
        });
        long warm = (long) (seconds * 0.2 * 1e9);
        Thread.sleep(warm / 1_000_000);
        long t0 = System.nanoTime(), b0 = bytesReceived.get();
        Thread.sleep((long) (seconds * 1000));
        long t1 = System.nanoTime(), b1 = bytesReceived.get();
        stopSending.set(true);
        sender.join();
        stopReceiving.set(true);
        receiver.join();
        return (b1 - b0) / (double) wire / ((t1 - t0) / 1e9);
    }

    /** Median microseconds for a frame to go a → b and back b → a through the switch. */
    private static double roundTripViaSwitch(int size, int count) {
        try (Network net = Network.builder().name("bench").create()) {
            Port a = net.port("a"), b = net.port("b");
            long macA = mac(a), macB = mac(b);
            learn(NetworkEnds.socket(b), macA, macB, NetworkEnds.socket(a));
            return pingPong(NetworkEnds.socket(a), NetworkEnds.socket(b), frame(size, macB, macA), frame(size, macA, macB), count);
        }
    }

    private static double roundTripDirect(int size, int count) {
        Fd[] pair = Posix.socketPair();
        try (Fd x = pair[0]; Fd y = pair[1]) {
            return pingPong(x, y, frame(size, 2, 4), frame(size, 4, 2), count);
        }
    }

    private static double pingPong(Fd a, Fd b, byte[] there, byte[] back, int count) {
        try (Poller io = new Poller(); Arena arena = Arena.ofConfined()) {
            MemorySegment out1 = framed(arena, there), out2 = framed(arena, back);
            MemorySegment in = arena.allocate(out1.byteSize());
            double[] micros = new double[count];
            for (int i = 0; i < count; i++) {
                long t = System.nanoTime();
                sendAll(io, a, out1);
                readAll(io, b, in);
                sendAll(io, b, out2);
                readAll(io, a, in);
                micros[i] = (System.nanoTime() - t) / 1e3;
            }
            java.util.Arrays.sort(micros);
            return micros[count / 2];
        }
    }

    /** b sends a frame to a and a reads it, so the switch learns b's address. */
    private static void learn(Fd bFd, long macA, long macB, Fd aFd) {
        try (Poller io = new Poller(); Arena arena = Arena.ofConfined()) {
            MemorySegment f = framed(arena, frame(64, macA, macB));
            sendAll(io, bFd, f);
            readAll(io, aFd, arena.allocate(f.byteSize()));
        }
    }

    private static void sendAll(Poller io, Fd fd, MemorySegment data) {
        for (long done = 0; done < data.byteSize(); ) {
            long n = io.send(fd.number(), data.asSlice(done));
            if (n < 0) throw new IllegalStateException("send: " + Poller.describe((int) -n));
            done += n;
        }
    }

    private static void readAll(Poller io, Fd fd, MemorySegment into) {
        for (long done = 0; done < into.byteSize(); ) {
            long n = io.read(fd.number(), into.asSlice(done));
            if (n <= 0) throw new IllegalStateException("read: " + (n == 0 ? "end of file" : Poller.describe((int) -n)));
            done += n;
        }
    }

    private static byte[] frame(int size, long destination, long source) {
        byte[] f = new byte[size];
        for (int i = 0; i < 6; i++) {
            f[i] = (byte) (destination >>> (40 - 8 * i));
            f[6 + i] = (byte) (source >>> (40 - 8 * i));
        }
        f[12] = (byte) 0x88;
        f[13] = (byte) 0xb5; // IEEE local experimental EtherType
        return f;
    }

    private static MemorySegment framed(Arena arena, byte[] frame) {
        MemorySegment s = arena.allocate(4 + frame.length);
        s.set(BE_INT, 0, frame.length);
        MemorySegment.copy(frame, 0, s, ValueLayout.JAVA_BYTE, 4, frame.length);
        return s;
    }

    private static long mac(Port p) {
        return HexFormat.fromHexDigitsToLong(p.mac().replace(":", ""));
    }

    private static double median(List<Double> xs) {
        double[] a = xs.stream().mapToDouble(Double::doubleValue).sorted().toArray();
        return a.length % 2 == 1 ? a[a.length / 2] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2;
    }

    private static String thousands(double x) {
        return String.format(Locale.ROOT, "%,.0f", x);
    }

    private static String thousands(List<Double> xs) {
        return xs.stream().map(SwitchBenchmark::thousands).toList().toString();
    }
}

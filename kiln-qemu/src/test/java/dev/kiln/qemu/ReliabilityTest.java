package dev.kiln.qemu;

import dev.kiln.ExecResult;
import dev.kiln.GuestImage;
import dev.kiln.image.DefaultImage;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Callable;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Many machines, one JVM: nothing accumulates. Tagged so a quick local run can leave it out
 * ({@code -DexcludedGroups=reliability}); CI runs it.
 */
@Tag("reliability")
@ExtendWith(QemuAvailable.class)
class ReliabilityTest {
    static final int CYCLES = Integer.getInteger("kiln.reliability.cycles", 200);
    static final int LANES = 2; // one per core: the cycles run two at a time
    static final int CONCURRENT = Integer.getInteger("kiln.reliability.concurrent", 8);

    @AfterAll
    static void noneLeft() {
        LeakCheck.assertNoneLeft();
    }

    /** Kiln's threads that serve the whole JVM, started once. */
    static final java.util.Set<String> JVM_WIDE_THREADS = java.util.Set.of("kiln-qga-write-watchdog", "kiln-exit-watcher");

    /** One boot → exec → shutdown cycle; returns its wall time in ms. */
    static long cycle(GuestImage image, int n) {
        long t0 = System.nanoTime();
        try (QemuMachine vm = QemuMachine.builder().image(image).memoryMib(128).start()) {
            ExecResult r = vm.guest().exec("sh", "-c", "echo cycle " + n);
            assertThat(r.stdoutText()).isEqualTo("cycle " + n + "\n");
            vm.shutdown(Duration.ofSeconds(30));
        }
        return (System.nanoTime() - t0) / 1_000_000;
    }

    @Test
    void bootExecShutdownCyclesLeaveFdsThreadsChildrenAndDirsAsTheyWere() throws Exception {
        GuestImage image = DefaultImage.get(System.out::println);
        List<Long> times = new ArrayList<>();
        try (var lanes = Executors.newVirtualThreadPerTaskExecutor()) {
            for (Future<Long> f : lanes.invokeAll(List.<Callable<Long>>of(() -> cycle(image, 0), () -> cycle(image, 1)))) times.add(f.get());
        }
        Snapshot first = Snapshot.take();
        int perLane = (CYCLES - LANES) / LANES;
        try (var lanes = Executors.newVirtualThreadPerTaskExecutor()) {
            List<Future<List<Long>>> running = new ArrayList<>();
            for (int lane = 0; lane < LANES; lane++) {
                int base = LANES + lane * perLane;
                running.add(lanes.submit(() -> {
                    List<Long> mine = new ArrayList<>();
                    for (int i = 0; i < perLane; i++) {
                        mine.add(cycle(image, base + i));
                        if ((base + i) % 25 == 0) System.out.printf("reliability: cycle %d of %d%n", base + i, CYCLES);
                    }
                    return mine;
                }));
            }
            for (var f : running) times.addAll(f.get());
        }
        Snapshot last = Snapshot.take();
        List<Long> sorted = times.stream().sorted().toList();
        System.out.printf("reliability: %d cycles, %d at a time; per cycle median %d ms, p90 %d ms, max %d ms%n"
                        + "  after the first cycles: %s%n  at the end:            %s%n", times.size(), LANES,
                sorted.get(sorted.size() / 2), sorted.get(sorted.size() * 9 / 10), sorted.getLast(), first, last);
        assertThat(times).hasSize(LANES + perLane * LANES);
        assertThat(last.fds).as("open fds by kind").isEqualTo(first.fds);
        // Only JVM-wide ones may remain: none per machine, platform or virtual.
        assertThat(last.kilnThreads).as("kiln threads").isEqualTo(first.kilnThreads).allMatch(JVM_WIDE_THREADS::contains);
        assertThat(last.platformThreads).as("platform threads").isLessThanOrEqualTo(first.platformThreads);
        assertThat(last.children).as("child processes").isEqualTo(first.children).isZero();
        assertThat(last.workDirs).as("work dirs").isEqualTo(first.workDirs).isZero();
    }

    @Test
    void eightGuestsAtOnceEachRunCommandsAndAllCleanUp() throws Exception {
        GuestImage image = DefaultImage.get(System.out::println);
        long t0 = System.nanoTime();
        try (var pool = Executors.newVirtualThreadPerTaskExecutor()) {
            List<Future<String>> guests = new ArrayList<>();
            for (int i = 0; i < CONCURRENT; i++) {
                int n = i;
                guests.add(pool.submit(() -> {
                    try (QemuMachine vm = QemuMachine.builder().image(image).memoryMib(128).readyTimeout(Duration.ofMinutes(6)).start()) {
                        for (int k = 0; k < 5; k++) {
                            ExecResult r = vm.guest().exec("sh", "-c", "echo $((" + n + " * 1000 + " + k + "))");
                            assertThat(r.stdoutText().strip()).isEqualTo(Integer.toString(n * 1000 + k));
                        }
                        String host = vm.guest().exec("cat", "/proc/sys/kernel/hostname").stdoutText().strip();
                        vm.shutdown(Duration.ofSeconds(60));
                        return host;
                    }
                }));
            }
            for (Future<String> g : guests) assertThat(g.get()).isEqualTo("kiln");
        }
        System.out.printf("reliability: %d guests at once, all done in %d ms%n", CONCURRENT,
                (System.nanoTime() - t0) / 1_000_000);
        LeakCheck.assertNoneLeft();
    }

    /**
     * What a leak would show in: fds by kind, platform threads, Kiln's threads (platform and virtual, from a thread
     * dump, by name), child processes, work dirs. No garbage collection first: a channel dropped without close holds
     * its fd until collected, and that is a leak to see.
     */
    record Snapshot(Map<String, Integer> fds, long platformThreads, List<String> kilnThreads, long children, long workDirs) {
        static Snapshot take() {
            Map<String, Integer> fds = new TreeMap<>();
            try (Stream<Path> s = Files.list(Path.of("/proc/self/fd"))) {
                for (Path p : s.toList()) {
                    String target;
                    try {
                        target = Files.readSymbolicLink(p).toString();
                    } catch (IOException e) {
                        continue; // the fd of the listing itself, closed by now
                    }
                    String kind = target.startsWith("socket:") ? "socket" : target.startsWith("pipe:") ? "pipe"
                            : target.startsWith("anon_inode:") ? target : target.endsWith(".jar") ? "jar" : "file";
                    fds.merge(kind, 1, Integer::sum);
                }
            } catch (IOException e) {
                throw new AssertionError(e);
            }
            return new Snapshot(fds, ManagementFactory.getThreadMXBean().getThreadCount(), kilnThreadNames(),
                    ProcessHandle.current().children().count(), LeakCheck.leftovers().size());
        }

        /** Every thread named kiln-…, virtual ones included, as the JDK's thread dump lists them. */
        private static List<String> kilnThreadNames() {
            try {
                Path dump = Files.createTempFile("kiln-threads", ".json");
                Files.delete(dump); // dumpThreads refuses an existing file
                try {
                    ManagementFactory.getPlatformMXBean(com.sun.management.HotSpotDiagnosticMXBean.class)
                            .dumpThreads(dump.toString(), com.sun.management.HotSpotDiagnosticMXBean.ThreadDumpFormat.JSON);
                    java.util.regex.Matcher m = java.util.regex.Pattern.compile("\"name\": \"(kiln-[^\"]*)\"").matcher(Files.readString(dump));
                    List<String> names = new ArrayList<>();
                    while (m.find()) names.add(m.group(1));
                    return names.stream().sorted().toList();
                } finally {
                    Files.deleteIfExists(dump);
                }
            } catch (IOException e) {
                throw new AssertionError("cannot dump the JVM's threads", e);
            }
        }
    }
}

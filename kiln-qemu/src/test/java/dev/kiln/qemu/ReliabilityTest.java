package dev.kiln.qemu;

import dev.kiln.ExecResult;
import dev.kiln.GuestImage;
import dev.kiln.image.DefaultImage;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

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
class ReliabilityTest {
    static { QemuAvailable.require(); }

    static final int CYCLES = Integer.getInteger("kiln.reliability.cycles", 200);
    static final int LANES = 2; // one per core: the cycles run two at a time
    static final int CONCURRENT = Integer.getInteger("kiln.reliability.concurrent", 8);

    @AfterAll
    static void noneLeft() {
        LeakCheck.assertNoneLeft();
    }

    /** One boot → exec → shutdown cycle; returns its wall time in ms. */
    static long cycle(GuestImage image, int n) {
        long t0 = System.nanoTime();
        try (QemuMachine vm = QemuMachine.builder().image(image).memoryMib(128).start()) {
            vm.console().await(image.readyMarker(), Duration.ofSeconds(120));
            vm.guest().awaitReady(Duration.ofSeconds(60));
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
        // Only JVM-wide ones (the agent client's write watchdog) may remain: none per machine.
        assertThat(last.kilnThreads).as("kiln threads").isEqualTo(first.kilnThreads).allMatch(n -> n.equals("kiln-qga-write-watchdog"));
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
                    try (QemuMachine vm = QemuMachine.builder().image(image).memoryMib(128).start()) {
                        vm.console().await(image.readyMarker(), Duration.ofMinutes(4));
                        vm.guest().awaitReady(Duration.ofMinutes(2));
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

    /** What a leak would show in: fds by kind, threads, child processes, work dirs. */
    record Snapshot(Map<String, Integer> fds, long platformThreads, List<String> kilnThreads, long children, long workDirs) {
        static Snapshot take() {
            System.gc(); // channels dropped without close would hold fds until collected: don't count those
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
            List<String> kiln = Thread.getAllStackTraces().keySet().stream().map(Thread::getName)
                    .filter(n -> n.startsWith("kiln-")).sorted().toList();
            return new Snapshot(fds, ManagementFactory.getThreadMXBean().getThreadCount(), kiln,
                    ProcessHandle.current().children().count(), LeakCheck.leftovers().size());
        }
    }
}

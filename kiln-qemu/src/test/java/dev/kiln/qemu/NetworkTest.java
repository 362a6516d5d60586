package dev.kiln.qemu;

import dev.kiln.GuestImage;
import dev.kiln.image.DefaultImage;
import dev.kiln.qemu.net.Network;
import dev.kiln.qemu.net.Port;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.function.UnaryOperator;

import static org.assertj.core.api.Assertions.assertThat;

/** Three real guests on a {@link Network}: they all talk, then the switch's faults cut them apart and heal. */
@ExtendWith(QemuAvailable.class)
class NetworkTest {
    static final List<String> IPS = List.of("10.0.1.1", "10.0.1.2", "10.0.1.3");
    static Network net;
    static List<Port> ports = List.of();
    static List<QemuMachine> vms = List.of();

    @BeforeAll
    static void boot() {
        GuestImage image = DefaultImage.get(System.out::println);
        net = Network.builder().name("nettest").create();
        ports = List.of(net.port("a"), net.port("b"), net.port("c"));
        vms = bootInParallel(image, ports.stream().<UnaryOperator<QemuMachine.Builder>>map(p -> b -> b.nic(p)).toList());
        for (int i = 0; i < vms.size(); i++) address(vms.get(i), IPS.get(i));
    }

    @AfterAll
    static void teardown() {
        try {
            closeAll(vms);
        } finally {
            if (net != null) net.close();
        }
        LeakCheck.assertNoneLeft();
        assertThat(Thread.getAllStackTraces().keySet()).noneMatch(t -> t.getName().startsWith("kiln-network-"));
    }

    @BeforeEach
    void allTalkToStartWith() {
        net.heal();
        awaitEveryoneReachesEveryone();
    }

    @Test
    void allReachEachOtherThroughTheSwitch() {
        for (Port p : ports) {
            assertThat(p.stats().framesIn()).as(p.name() + " sent frames").isPositive();
            assertThat(p.stats().framesOut()).as(p.name() + " received frames").isPositive();
            assertThat(p.stats().connected()).isTrue();
        }
    }

    @Test
    void aPartitionedMachineReachesNoOneWhileTheOthersStillTalk() {
        net.partition(List.of(ports.get(2)), List.of(ports.get(0), ports.get(1)));
        assertCutOff(2);
        net.heal();
        awaitEveryoneReachesEveryone();
    }

    @Test
    void linkDownCutsAMachineOffAndLinkUpBringsItBack() {
        net.linkDown(ports.get(0));
        assertCutOff(0);
        net.linkUp(ports.get(0));
        awaitEveryoneReachesEveryone();
    }

    @Test
    void totalLossOnOnePortCutsItOff() {
        net.loss(ports.get(1), 1.0);
        long droppedBefore = ports.get(1).stats().droppedByFault();
        assertCutOff(1);
        assertThat(ports.get(1).stats().droppedByFault()).isGreaterThan(droppedBefore);
        net.loss(ports.get(1), 0.0);
        awaitEveryoneReachesEveryone();
    }

    @Test
    void delayOnAPortShowsInRoundTripTimes() {
        net.delay(ports.get(2), Duration.ofMillis(150));
        // a -> c waits 150 ms at c's port, and the reply again: the ping cannot end sooner than 300 ms after it began.
        // Timed on the host: the guest's clock under TCG (jiffies once the watchdog drops its TSC) runs slow.
        long start = System.nanoTime();
        String out = vms.get(0).guest().exec("ping", "-c", "1", "-W", "5", IPS.get(2)).orThrow().stdoutText();
        Duration took = Duration.ofNanos(System.nanoTime() - start);
        assertThat(out).contains("1 packets received");
        assertThat(took).as(out).isGreaterThanOrEqualTo(Duration.ofMillis(300));
    }

    /** Machine {@code cut} reaches no one, and the other two still reach each other. */
    private static void assertCutOff(int cut) {
        Map<Integer, Set<String>> reached = reachability(1);
        assertThat(reached.get(cut)).as(vmName(cut) + " reaches no one\n" + net.describe()).isEmpty();
        for (int i = 0; i < vms.size(); i++) {
            if (i == cut) continue;
            Set<String> expected = new TreeSet<>(IPS);
            expected.remove(IPS.get(i));
            expected.remove(IPS.get(cut));
            assertThat(reached.get(i)).as(vmName(i) + " reaches the other uncut machine only\n" + net.describe())
                    .isEqualTo(expected);
        }
    }

    private static void awaitEveryoneReachesEveryone() {
        Map<Integer, Set<String>> reached = Map.of();
        for (int attempt = 1; attempt <= 5; attempt++) {
            reached = reachability(2);
            if (reached.entrySet().stream().allMatch(e -> e.getValue().size() == IPS.size() - 1)) return;
        }
        throw new AssertionError("after 5 attempts, not every machine reaches every other: " + reached + "\n" + net.describe());
    }

    /** Which addresses each machine reaches with one ping each (all pings at once, all machines at once). */
    private static Map<Integer, Set<String>> reachability(int waitSeconds) {
        try (ExecutorService exec = Executors.newVirtualThreadPerTaskExecutor()) {
            List<Future<Set<String>>> results = new ArrayList<>();
            for (int i = 0; i < vms.size(); i++) {
                List<String> others = new ArrayList<>(IPS);
                others.remove(IPS.get(i));
                QemuMachine vm = vms.get(i);
                String script = "for ip in " + String.join(" ", others) + "; do (ping -c 1 -W " + waitSeconds
                        + " $ip >/dev/null 2>&1 && echo $ip) & done; wait";
                results.add(exec.submit(() -> new TreeSet<>(Arrays.stream(vm.guest().exec("sh", "-c", script).orThrow()
                        .stdoutText().split("\\s+")).filter(s -> !s.isEmpty()).toList())));
            }
            Map<Integer, Set<String>> reached = new LinkedHashMap<>();
            for (int i = 0; i < results.size(); i++) reached.put(i, results.get(i).get());
            return reached;
        } catch (InterruptedException | ExecutionException e) {
            throw new AssertionError("pinging failed: " + e, e);
        }
    }

    private static String vmName(int i) {
        return "machine " + (char) ('a' + i) + " (" + IPS.get(i) + ")";
    }

    // ---- shared with CableTest

    /** Boots one guest per configuration at the same time, each ready for exec; closes them all if one fails. */
    static List<QemuMachine> bootInParallel(GuestImage image, List<UnaryOperator<QemuMachine.Builder>> configs) {
        List<QemuMachine> started = new ArrayList<>();
        try (ExecutorService exec = Executors.newVirtualThreadPerTaskExecutor()) {
            List<Future<QemuMachine>> futures = new ArrayList<>();
            for (UnaryOperator<QemuMachine.Builder> config : configs) {
                QemuMachine.Builder builder = config.apply(QemuMachine.builder().image(image).memoryMib(256));
                futures.add(exec.submit(() -> {
                    QemuMachine vm = builder.start();
                    synchronized (started) {
                        started.add(vm);
                    }
                    vm.console().await(image.readyMarker(), Duration.ofSeconds(120));
                    vm.guest().awaitReady(Duration.ofSeconds(60));
                    return vm;
                }));
            }
            List<QemuMachine> vms = new ArrayList<>();
            for (Future<QemuMachine> f : futures) vms.add(f.get());
            return vms;
        } catch (InterruptedException | ExecutionException | RuntimeException e) {
            closeAll(started);
            throw new AssertionError("booting " + configs.size() + " guests failed: " + e, e);
        }
    }

    /** Gives the guest's only NIC a /24 address and brings it up. */
    static void address(QemuMachine vm, String ip) {
        vm.guest().exec("sh", "-c", "ip addr add " + ip + "/24 dev eth0 && ip link set eth0 up").orThrow();
    }

    static void closeAll(List<QemuMachine> machines) {
        RuntimeException failure = null;
        for (QemuMachine vm : machines) {
            try {
                vm.close();
            } catch (RuntimeException e) {
                if (failure == null) failure = e;
                else failure.addSuppressed(e);
            }
        }
        if (failure != null) throw failure;
    }
}

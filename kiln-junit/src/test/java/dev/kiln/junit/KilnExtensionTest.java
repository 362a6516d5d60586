package dev.kiln.junit;

import dev.kiln.Machine;
import dev.kiln.MachineState;
import dev.kiln.qemu.QemuMachine;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Nested;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import java.nio.file.Files;
import java.time.Duration;
import java.time.Instant;
import java.util.Comparator;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

import static org.assertj.core.api.Assertions.assertThat;

/** The extension as a user meets it: real machines, six boots in all. */
@ExtendWith(LeakCheck.class) // before @KilnTest: its afterAll runs after Kiln's
@KilnTest
class KilnExtensionTest {
    /** Machines tests were given, to check afterwards that they were closed (the set is thread-safe). */
    static final Set<Machine> handedOut = ConcurrentHashMap.newKeySet();

    @Vm(spec = "sharedSpec")
    static QemuMachine shared;

    static QemuMachine.Builder sharedSpec() {
        return QemuMachine.builder().name("junit-shared").memoryMib(192).append("kiln.spec=shared");
    }

    @AfterAll
    static void everyPerTestMachineWasClosed() {
        assertThat(handedOut).hasSize(5).allSatisfy(m -> {
            assertThat(m.state()).isEqualTo(MachineState.EXITED);
            assertThat(m.workDir()).doesNotExist();
        });
        assertThat(shared.isRunning()).as("the class's machine lives until after all").isTrue();
    }

    @Test
    void aStaticFieldGetsOneReadyMachineBuiltFromItsSpec() {
        assertThat(shared.id()).isEqualTo("junit-shared");
        assertThat(shared.commandLine()).containsSequence("-m", "192");
        assertThat(shared.console().transcript()).contains("KILN-READY");
        assertThat(shared.guest().exec("cat", "/proc/cmdline").orThrow().stdoutText()).contains("kiln.spec=shared");
    }

    @Test
    void aNamedParameterGetsTheRunningMachineOfThatName(@Vm(name = "junit-shared") Machine same) {
        assertThat(same).isSameAs(shared);
    }

    @Nested
    class PerTest {
        @Vm
        Machine perTest;

        @Test
        void fieldsAndParametersOfATestStartTogether(@Vm QemuMachine a,
                                                     @Vm(memoryMib = 160, cpus = 2, append = "kiln.param=b") QemuMachine b) {
            List<QemuMachine> all = List.of((QemuMachine) perTest, a, b);
            handedOut.addAll(all);
            perTestIds.add(perTest.id());
            assertThat(all).extracting(Machine::id).doesNotHaveDuplicates();
            for (QemuMachine m : all) assertThat(m.guest().exec("true").exitCode()).isZero();
            assertThat(b.commandLine()).containsSequence("-m", "160").containsSequence("-smp", "2");
            assertThat(b.guest().exec("cat", "/proc/cmdline").orThrow().stdoutText()).contains("kiln.param=b");
            assertThat(b.guest().exec("nproc").orThrow().stdoutText().strip()).isEqualTo("2");

            // Started one after the other, the last QEMU would spawn only once the first guest had its agent up.
            List<Instant> spawned = all.stream().map(KilnExtensionTest::spawnedAt).sorted().toList();
            Duration spread = Duration.between(spawned.getFirst(), spawned.getLast());
            Duration quickestAgent = all.stream().map(KilnExtensionTest::agentStartedAfterBoot).min(Comparator.naturalOrder()).orElseThrow();
            assertThat(spread).as("spread of the QEMU spawn instants %s, against the quickest guest's agent start (%s after its boot)",
                    spawned, quickestAgent).isLessThan(quickestAgent);
        }

        @Test
        void anInstanceFieldGetsAMachineForEachTest() {
            handedOut.add(perTest);
            perTestIds.add(perTest.id());
            assertThat(perTest.state()).isEqualTo(MachineState.RUNNING);
        }

        /** The ids of the perTest machines each test of this class was given. */
        static final List<String> perTestIds = new java.util.concurrent.CopyOnWriteArrayList<>();

        @AfterAll
        static void eachTestHadAMachineOfItsOwn() {
            assertThat(perTestIds).hasSize(2).doesNotHaveDuplicates();
        }
    }

    @Nested
    class LifecycleParameters {
        @BeforeEach
        void prepare(@Vm(name = "junit-lifecycle") QemuMachine vm) {
            handedOut.add(vm);
            vm.guest().exec("touch", "/tmp/prepared").orThrow();
        }

        @Test
        void aNamedParameterOfBeforeEachAndTheTestIsOneMachine(@Vm(name = "junit-lifecycle") QemuMachine vm) {
            assertThat(handedOut).contains(vm);
            assertThat(vm.guest().exec("test", "-e", "/tmp/prepared").exitCode()).isZero();
        }
    }

    private static Instant spawnedAt(Machine m) {
        return ProcessHandle.of(m.pid().orElseThrow()).orElseThrow().info().startInstant().orElseThrow();
    }

    /** When the guest's qemu-ga started, counted from the guest's boot (/proc/PID/stat field 22, in 1/100 s). */
    private static Duration agentStartedAfterBoot(Machine m) {
        String ticks = m.guest().exec("sh", "-c", "cut -d' ' -f22 /proc/$(pidof qemu-ga)/stat").orThrow().stdoutText().strip();
        return Duration.ofMillis(Long.parseLong(ticks) * 10);
    }
}

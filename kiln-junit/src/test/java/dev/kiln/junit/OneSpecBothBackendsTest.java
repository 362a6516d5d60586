package dev.kiln.junit;

import dev.kiln.Backend;
import dev.kiln.ExecResult;
import dev.kiln.Kiln;
import dev.kiln.LaunchException;
import dev.kiln.Machine;
import dev.kiln.MachineSpec;
import dev.kiln.MachineState;
import dev.kiln.StateChange;
import dev.kiln.firecracker.FirecrackerMachine;
import dev.kiln.qemu.QemuMachine;
import dev.kiln.support.Executables;
import dev.kiln.support.HostKvm;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * One spec, the same scenario, on each backend: {@link Kiln#start} picks the VMM from the spec alone. Where
 * Firecracker cannot boot a guest (no usable /dev/kvm), its half checks everything short of that on the real binary:
 * the start is refused at once saying why, and the same spec without a guest runs through the same lifecycle.
 */
class OneSpecBothBackendsTest {
    static final MachineSpec SPEC = MachineSpec.builder().name("one-spec").memoryMib(192).cpus(1)
            .kernelArgs("kiln.spec=one").build();

    @AfterAll
    static void nothingLeft() {
        LeakCheck.assertNoneLeft();
    }

    @ParameterizedTest
    @EnumSource(Backend.class)
    void theSameSpecBootsAndRunsACommandOnEitherBackend(Backend backend) {
        MachineSpec spec = SPEC.withBackend(backend);
        requireBinary(backend);
        if (backend == Backend.FIRECRACKER && !HostKvm.usable()) {
            assertThatThrownBy(() -> Kiln.start(spec)).isInstanceOf(LaunchException.class)
                    .hasMessageContaining("needs real KVM").hasMessageContaining(HostKvm.whyUnusable());
            Machine noGuest = Kiln.create(spec.toBuilder().noGuest().build());
            try (noGuest) {
                noGuest.start();
                assertThat(noGuest.as(FirecrackerMachine.class).api().describeInstance().id()).isEqualTo("one-spec");
            }
            assertThat(steps(noGuest)).containsExactly("NEW->STARTING", "STARTING->RUNNING", "RUNNING->STOPPING", "STOPPING->EXITED");
            Assumptions.abort("a guest boot on Firecracker needs real KVM, and " + HostKvm.whyUnusable());
        }
        Machine vm = Kiln.create(spec);
        try (vm) {
            vm.start();
            assertThat(vm.backend()).isEqualTo(backend);
            assertThat(vm.id()).isEqualTo("one-spec");
            ExecResult cmdline = vm.guest().exec("cat", "/proc/cmdline").orThrow();
            assertThat(cmdline.stdoutText()).contains("kiln.spec=one");
            assertThat(vm.guest().exec("nproc").orThrow().stdoutText().strip()).isEqualTo("1");
            // What only one VMM has stays on its type, reached without a cast.
            if (backend == Backend.QEMU) assertThat(vm.as(QemuMachine.class).command("query-status").path("running").asBoolean()).isTrue();
            else assertThat(vm.as(FirecrackerMachine.class).api().describeInstance().id()).isEqualTo("one-spec");
        }
        assertThat(vm.state()).isEqualTo(MachineState.EXITED);
        assertThat(steps(vm)).containsExactly("NEW->STARTING", "STARTING->RUNNING", "RUNNING->STOPPING", "STOPPING->EXITED");
        assertThat(vm.transitions()).extracting(StateChange::reason).contains("start()", "up and ready", "shutdown()");
    }

    private static List<String> steps(Machine m) {
        return m.transitions().stream().map(t -> t.from() + "->" + t.to()).toList();
    }

    private static void requireBinary(Backend backend) {
        if (backend == Backend.QEMU) {
            String bin = System.getenv().getOrDefault("KILN_QEMU", "qemu-system-x86_64");
            Assumptions.assumeTrue(Executables.find(bin).isPresent(), "QEMU not found (" + bin + "): install qemu-system-x86");
        } else {
            String bin = System.getenv("FIRECRACKER_BIN");
            Assumptions.assumeTrue(bin != null && Executables.find(bin).isPresent(),
                    "FIRECRACKER_BIN is not set: point it at a Firecracker release binary to run the Firecracker half");
        }
    }
}

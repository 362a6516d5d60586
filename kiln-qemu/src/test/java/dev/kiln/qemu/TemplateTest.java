package dev.kiln.qemu;

import dev.kiln.KilnException;
import dev.kiln.Machine;
import dev.kiln.MachineSpec;
import dev.kiln.MachineState;
import dev.kiln.Snapshot;
import dev.kiln.qemu.net.Cable;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Instant;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Templates of real guests: the template's RAM is a file, its clones map it copy-on-write and load only the devices'
 * state; each clone is a machine of its own — its writes its own, its clock the host's, its MAC and hostname its own —
 * so that two clones on one cable work together.
 */
@ExtendWith(QemuAvailable.class)
class TemplateTest {
    private static final int MEMORY_MIB = 256;
    @TempDir
    static Path dir;
    private static Snapshot template;
    private static final AtomicReference<String> templateMac = new AtomicReference<>();
    private static final AtomicReference<String> templateShell = new AtomicReference<>();

    /** A guest on one end of a cable, with its state in memory (/tmp is RAM) and its clock an hour behind. */
    @BeforeAll
    static void makeTemplate() {
        try (Cable cable = Cable.create()) {
            template = Snapshot.template(spec(cable.a()), dir.resolve("template"), vm -> {
                vm.guest().succeed("echo template > /tmp/state && date -u -s @" + (Instant.now().getEpochSecond() - 3600) + " >/dev/null");
                templateMac.set(vm.guest().succeed("cat /sys/class/net/eth0/address").strip());
                templateShell.set(vm.guest().exec("sh", "-c", "echo $PPID").stdoutText().strip()); // the exec slot's shell
                assertThatThrownBy(() -> vm.snapshot(dir.resolve("other"))).hasMessageContaining("is a template in the making");
            });
        }
    }

    @AfterAll
    static void nothingLeaks() {
        LeakCheck.assertNoneLeft();
    }

    private static MachineSpec spec(Cable.End end) {
        return QemuMachine.builder().image(TestGuests.image()).memoryMib(MEMORY_MIB).readyTimeout(TestGuests.MARKER).nic(end).spec();
    }

    @Test
    void theTemplateIsItsRamFileWithOnlyTheDevicesInItsState() throws IOException {
        assertThat(template.isTemplate()).isTrue();
        Path memory = template.dir().resolve(Snapshot.MEMORY);
        assertThat(Files.size(memory)).isEqualTo((long) MEMORY_MIB << 20);
        // RAM the guest used is tens of MiB: a state that held it would be as large.
        assertThat(Files.size(template.dir().resolve(Snapshot.STATE))).isLessThan(4L << 20);
    }

    @Test
    void twoClonesOnACableAreDistinctMachinesThatWorkTogether() {
        try (Cable cable = Cable.create();
             Machine a = template.restore(spec(cable.a()));
             Machine b = template.restore(spec(cable.b()))) {
            for (Machine clone : List.of(a, b)) {
                assertThat(clone.guest().succeed("cat /tmp/state")).isEqualTo("template\n");
                assertThat(clone.guest().exec("sh", "-c", "echo $PPID").stdoutText().strip())
                        .as("the template's exec shell serves its clones: none had to start one").isEqualTo(templateShell.get());
                long guestClock = Long.parseLong(clone.guest().succeed("date +%s").strip());
                long now = Instant.now().getEpochSecond();
                assertThat(guestClock).as("the clone's clock, set from the host's").isBetween(now - 1, now + 1);
                assertThat(clone.guest().succeed("hostname").strip()).isEqualTo(clone.id());
                // Its RAM is the template's file, mapped privately.
                String maps = readMaps(clone);
                assertThat(maps).contains(template.dir().resolve(Snapshot.MEMORY).toString());
            }
            assertThat(mac(a)).isEqualTo(cable.macA()).isNotEqualTo(templateMac.get());
            assertThat(mac(b)).isEqualTo(cable.macB());

            a.guest().succeed("echo clone-a > /tmp/state");
            assertThat(b.guest().succeed("cat /tmp/state")).isEqualTo("template\n");

            a.guest().succeed("ip addr add 10.0.0.1/24 dev eth0 && ip link set eth0 up");
            b.guest().succeed("ip addr add 10.0.0.2/24 dev eth0 && ip link set eth0 up");
            assertThat(a.guest().succeed("ping -c 3 -W 2 10.0.0.2")).contains("3 packets received");
            assertThat(b.guest().succeed("ip neigh")).contains(cable.macA());
        }
        // the template itself is as it was saved
        try (Cable cable = Cable.create(); Machine c = template.restore(spec(cable.a()))) {
            assertThat(c.guest().succeed("cat /tmp/state")).isEqualTo("template\n");
        }
    }

    @Test
    void aTemplateWhoseMemoryChangedIsRefusedBeforeQemuStarts() throws IOException {
        Path memory = template.dir().resolve(Snapshot.MEMORY);
        FileTime was = Files.getLastModifiedTime(memory);
        try (Cable cable = Cable.create()) {
            Files.setLastModifiedTime(memory, FileTime.from(was.toInstant().plusSeconds(60)));
            Machine vm = QemuMachine.create(spec(cable.a()));
            assertThatThrownBy(() -> vm.startFrom(template)).isInstanceOf(KilnException.class)
                    .hasMessageContaining("its memory " + memory + " has changed since the snapshot was taken");
            assertThat(vm.state()).isEqualTo(MachineState.FAILED);
            assertThat(vm.pid()).as("no QEMU was spawned").isEmpty();
        } finally {
            Files.setLastModifiedTime(memory, was);
        }
    }

    @Test
    void restoreManyStartsThemAllOrNone() {
        Path elsewhere = dir.resolve("plain");
        MachineSpec plain = QemuMachine.builder().image(TestGuests.image()).memoryMib(MEMORY_MIB).readyTimeout(TestGuests.MARKER).spec();
        Snapshot t = Snapshot.template(plain, elsewhere);
        List<Machine> clones = t.restore(3);
        try {
            assertThat(clones).hasSize(3).allSatisfy(m -> assertThat(m.state()).isEqualTo(MachineState.RUNNING));
            assertThat(clones.stream().map(m -> m.guest().succeed("hostname").strip()).distinct()).hasSize(3);
            // Its kernel is in the template's memory, not on its command line: it cannot boot again, and says so.
            QemuMachine clone = clones.getFirst().as(QemuMachine.class);
            assertThat(clone.commandLine()).doesNotContain("-kernel");
            assertThatThrownBy(clone::reset).hasMessageContaining("is a clone of a template").hasMessageContaining("cannot boot again");
            assertThat(clone.guest().succeed("echo alive")).isEqualTo("alive\n");
        } finally {
            clones.forEach(Machine::close);
        }
    }

    private static String mac(Machine vm) {
        return vm.guest().succeed("cat /sys/class/net/eth0/address").strip();
    }

    private static String readMaps(Machine vm) {
        try {
            return Files.readString(Path.of("/proc/" + vm.pid().orElseThrow() + "/maps"));
        } catch (IOException e) {
            throw new AssertionError(e);
        }
    }
}

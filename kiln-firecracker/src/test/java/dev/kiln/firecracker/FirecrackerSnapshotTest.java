package dev.kiln.firecracker;

import dev.kiln.Drive;
import dev.kiln.GuestImage;
import dev.kiln.KilnException;
import dev.kiln.LaunchException;
import dev.kiln.Machine;
import dev.kiln.MachineSpec;
import dev.kiln.MachineState;
import dev.kiln.Snapshot;
import dev.kiln.firecracker.api.model.CpuTemplate;
import dev.kiln.firecracker.api.model.InstanceState;
import dev.kiln.image.DefaultImage;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.lang.reflect.Method;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Snapshots on the real Firecracker. Taking one, and loading one that Firecracker accepts, needs a running guest and
 * so real KVM ({@link #aBootedGuestIsSavedAndRestoredWithItsMemoryDiskAndClock}, skipped without it). Everything
 * before that runs anywhere: what a snapshot records of its VMM, a restore refused before Firecracker starts, and the
 * load itself up to the point where Firecracker reads the saved state — which, for the hand-made snapshots here, it
 * refuses, in its own words, ending itself; Kiln must pass those words on and leave nothing behind.
 */
class FirecrackerSnapshotTest {
    private static final int NOBODY = 65534;

    @TempDir
    Path dir;

    @AfterEach
    void nothingLeft() {
        LeakCheck.assertNoneLeft(dir);
    }

    /** A guest machine on {@code binary} with a disk the machine writes; kvmCheck(false) lets it get as far as the load. */
    private static FirecrackerMachine.Builder machine(String binary) {
        return FirecrackerMachine.builder().binary(binary).image(DefaultImage.get(System.out::println)).memoryMib(128)
                .drive(Drive.scratch(4 << 20).id("data")).kvmCheck(false).readiness();
    }

    /**
     * A snapshot directory made by hand for {@code spec}: the description the core would write (with {@code vmm}, what
     * a driver's stateInfo gives), a copy of drive {@code data}, and {@code state} as the saved state, with a memory file.
     */
    private Snapshot handMade(String name, MachineSpec spec, Map<String, String> vmm, byte[] state) throws IOException {
        Path snap = Files.createDirectories(dir.resolve(name));
        Map<String, String> info = new TreeMap<>(describe(spec, vmm));
        info.put("drive.data.copy", "drive-data.raw");
        info.put("drive.data.copyFormat", "RAW");
        try (RandomAccessFile f = new RandomAccessFile(snap.resolve("drive-data.raw").toFile(), "rw")) {
            f.setLength(4 << 20);
        }
        Files.write(snap.resolve(Snapshot.STATE), state);
        try (RandomAccessFile f = new RandomAccessFile(snap.resolve(FirecrackerDriver.SAVED_MEMORY).toFile(), "rw")) {
            f.setLength(128L << 20);
        }
        return Snapshot.write(snap, info, spec);
    }

    /** What the core writes of a spec and its VMM ({@code dev.kiln.vmm.Snapshots}, internal to the core: reached by reflection). */
    @SuppressWarnings("unchecked")
    private static Map<String, String> describe(MachineSpec spec, Map<String, String> vmm) {
        try {
            Method describe = Class.forName("dev.kiln.vmm.Snapshots")
                    .getDeclaredMethod("describe", MachineSpec.class, GuestImage.class, List.class, Map.class);
            describe.setAccessible(true);
            return (Map<String, String>) describe.invoke(null, spec, spec.image().orElseThrow(), spec.drives(), vmm);
        } catch (ReflectiveOperationException e) {
            throw new AssertionError("the core's snapshot description changed: " + e, e);
        }
    }

    private static Map<String, String> stateInfo(MachineSpec spec) {
        return new FirecrackerDriver(spec, spec.options(FirecrackerOptions.class).orElseThrow()).stateInfo();
    }

    private static byte[] garbage() {
        byte[] b = new byte[4096];
        new java.util.Random(7).nextBytes(b);
        return b;
    }

    @Test
    void theStateInfoNamesTheVersionTheCpuTemplateAndTheHostCpu() {
        String bin = Binaries.firecracker();
        Map<String, String> info = stateInfo(machine(bin).spec());
        assertThat(info).containsEntry("vmm.version", Binaries.version()).containsEntry("vmm.cpuTemplate", "None")
                .containsKey("vmm.cpu").doesNotContainKey("vmm.taps");
        assertThat(info.keySet()).allMatch(k -> k.startsWith("vmm."), "only vmm.* entries: the core compares those");
        assertThat(stateInfo(machine(bin).cpuTemplate(CpuTemplate.T2).spec())).containsEntry("vmm.cpuTemplate", "T2");
        // A release that cannot give a restored machine other taps records them, so that a restore with others is refused.
        Map<String, String> withTap = stateInfo(machine(bin).tap("kilnsnap0", null).spec());
        if (Binaries.atLeast(1, 14)) assertThat(withTap).doesNotContainKey("vmm.taps");
        else assertThat(withTap).containsEntry("vmm.taps", "kilnsnap0");
    }

    /** The API-level sequence: a load of a state that is not Firecracker's fails with Firecracker's reason, and Firecracker ends. */
    @Test
    void aGarbageStateIsRefusedByFirecrackerItself() throws IOException {
        Path state = Files.write(dir.resolve("garbage.vmstate"), garbage());
        Path memory = Files.write(dir.resolve("garbage.mem"), new byte[4096]);
        FirecrackerMachine vm = FirecrackerMachine.builder().binary(Binaries.firecracker()).noGuest()
                .configure("restore", m -> m.setup().restoreFromSnapshot(memory, state, List.of(), false)).build();
        assertThatThrownBy(vm::start).isInstanceOf(LaunchException.class)
                .hasMessageContaining("configuration step 'restore' failed")
                .hasMessageContaining("Load snapshot error")
                .hasMessageMatching("(?s).*(CRC64 validation failed|bincode decoding).*");
        assertThat(vm.state()).isEqualTo(MachineState.FAILED);
        assertThat(vm.vmmLog()).contains("Firecracker exiting with error");
    }

    /** A restore through the machine: the spec's drives in place, the load sent, Firecracker's refusal named with the snapshot. */
    @Test
    void aRestoreOfAGarbageStateFailsNamingTheSnapshotAndLeavesNothingBehind() throws IOException {
        MachineSpec spec = machine(Binaries.firecracker()).spec();
        Snapshot snapshot = handMade("snap", spec, stateInfo(spec), garbage());
        FirecrackerMachine vm = FirecrackerMachine.create(spec);
        assertThatThrownBy(() -> vm.startFrom(snapshot)).isInstanceOf(LaunchException.class)
                .hasMessageContaining("cannot restore the snapshot in " + snapshot.dir())
                .hasMessageContaining("Firecracker refused its saved state " + snapshot.dir().resolve(Snapshot.STATE))
                .hasMessageMatching("(?s).*Load snapshot error: .*(CRC64 validation failed|bincode decoding).*");
        assertThat(vm.state()).isEqualTo(MachineState.FAILED);
        assertThat(vm.isRunning()).isFalse();
        assertThat(vm.workDir()).doesNotExist();
        // The load came after the drives were put where the snapshot records them, and it was not preceded by any configuration.
        assertThat(vm.vmmLog()).doesNotContain("/boot-source").doesNotContain("/machine-config").doesNotContain("/drives/");
        assertThat(snapshot.dir().resolve(Snapshot.STATE)).hasBinaryContent(garbage()); // the snapshot is never written
    }

    @Test
    void aTruncatedStateFailsTheRestoreWithFirecrackersReason() throws IOException {
        MachineSpec spec = machine(Binaries.firecracker()).spec();
        Snapshot snapshot = handMade("truncated", spec, stateInfo(spec), new byte[0]);
        FirecrackerMachine vm = FirecrackerMachine.create(spec);
        assertThatThrownBy(() -> vm.startFrom(snapshot)).isInstanceOf(LaunchException.class)
                .hasMessageContaining("cannot restore the snapshot in " + snapshot.dir())
                .hasMessageMatching("(?s).*Load snapshot error: .*(smaller than CRC length|UnexpectedEnd).*");
        assertThat(vm.workDir()).doesNotExist();
    }

    /**
     * What each binary's snapshot load takes, asked of the binary itself, decides the request: {@code mem_backend}
     * (a File, mapped privately) and {@code resume_vm} on every release, {@code network_overrides} for the spec's taps
     * where the release takes it. Firecracker getting as far as reading the state proves it parsed the request.
     */
    @Test
    void theLoadRequestIsOneEachReleaseAccepts() throws IOException {
        String bin = Binaries.firecracker();
        List<String> binaries = new java.util.ArrayList<>(List.of(bin));
        Binaries.anotherRelease().ifPresent(binaries::add);
        for (String binary : binaries) {
            // The tap need not exist: Firecracker reads the state before it opens the devices.
            MachineSpec spec = machine(binary).tap("kilnsnap0", null).spec();
            Snapshot snapshot = handMade("fields-" + binaries.indexOf(binary), spec, stateInfo(spec), garbage());
            FirecrackerMachine vm = FirecrackerMachine.create(spec);
            assertThatThrownBy(() -> vm.startFrom(snapshot)).as(binary).isInstanceOf(LaunchException.class)
                    .hasMessageContaining("Load snapshot error");
            String log = vm.vmmLog();
            assertThat(log).as(binary).contains("unknown field `kiln_probe`, expected one of").contains("`mem_backend`")
                    .contains("\\\"mem_backend\\\":{\\\"backend_type\\\":\\\"File\\\",\\\"backend_path\\\":\\\""
                            + snapshot.dir().resolve(FirecrackerDriver.SAVED_MEMORY))
                    .contains("\\\"resume_vm\\\":true").doesNotContain("mem_file_path\\\":");
            boolean overrides = FirecrackerBinary.atLeast(Binaries.version(binary), 1, 14);
            if (overrides) {
                assertThat(log).as(binary).contains("\\\"network_overrides\\\":[{\\\"iface_id\\\":\\\"eth0\\\",\\\"host_dev_name\\\":\\\"kilnsnap0\\\"}]");
            } else {
                assertThat(log).as(binary).doesNotContain("\\\"network_overrides\\\"");
            }
        }
    }

    /** The core refuses a snapshot of another Firecracker release before anything starts, by the version stateInfo gives. */
    @Test
    void aSnapshotOfAnotherReleaseIsRefusedBeforeFirecrackerStarts() throws IOException {
        String bin = Binaries.firecracker();
        String other = Binaries.anotherRelease().orElse(null);
        MachineSpec spec = machine(bin).spec();
        Map<String, String> then = other != null ? stateInfo(machine(other).spec()) : new TreeMap<>(stateInfo(spec));
        if (other == null) then.put("vmm.version", "0.1.0"); // only one release here: a snapshot of an older one by hand
        Snapshot snapshot = handMade("other-release", spec, then, garbage());
        FirecrackerMachine vm = FirecrackerMachine.create(spec);
        assertThatThrownBy(() -> vm.startFrom(snapshot)).isInstanceOf(LaunchException.class)
                .hasMessageContaining("cannot restore the snapshot in " + snapshot.dir())
                .hasMessageContaining("vmm.version was " + then.get("vmm.version") + ", and is now " + Binaries.version())
                .satisfies(e -> assertThat(((LaunchException) e).commandLine()).as("nothing spawned").isEmpty());
        assertThat(vm.workDir()).isNull();
        // Another CPU template is refused the same way.
        MachineSpec t2 = machine(bin).cpuTemplate(CpuTemplate.T2).spec();
        assertThatThrownBy(() -> FirecrackerMachine.create(t2).startFrom(handMade("template", spec, stateInfo(spec), garbage())))
                .hasMessageContaining("vmm.cpuTemplate was None, and is now T2");
    }

    @Test
    void aSnapshotWithoutItsMemoryIsRefusedBeforeFirecrackerStarts() throws IOException {
        MachineSpec spec = machine(Binaries.firecracker()).spec();
        Snapshot snapshot = handMade("no-memory", spec, stateInfo(spec), garbage());
        Files.delete(snapshot.dir().resolve(FirecrackerDriver.SAVED_MEMORY));
        FirecrackerMachine vm = FirecrackerMachine.create(spec);
        assertThatThrownBy(() -> vm.startFrom(snapshot)).isInstanceOf(LaunchException.class)
                .hasMessageContaining("cannot restore the snapshot in " + snapshot.dir() + ": its guest memory "
                        + snapshot.dir().resolve(FirecrackerDriver.SAVED_MEMORY) + " is missing")
                .satisfies(e -> assertThat(((LaunchException) e).commandLine()).as("nothing spawned").isEmpty());
    }

    /** Without KVM, a restore with the default KVM check fails at once, saying so, before anything is made. */
    @Test
    void withoutKvmARestoreFailsBeforeAnythingIsMade() throws IOException {
        String bin = Binaries.firecracker();
        assumeTrue(!Binaries.kvmBootable(), "this host has real KVM: the restore would get further");
        MachineSpec spec = machine(bin).spec();
        Snapshot snapshot = handMade("no-kvm", spec, stateInfo(spec), garbage());
        FirecrackerMachine vm = FirecrackerMachine.create(machine(bin).kvmCheck(true).spec());
        assertThatThrownBy(() -> vm.startFrom(snapshot)).isInstanceOf(LaunchException.class)
                .hasMessageContaining("Firecracker cannot boot a guest on this host: it needs real KVM");
        assertThat(vm.state()).isEqualTo(MachineState.FAILED);
        assertThat(vm.workDir()).isNull();
    }

    /** A jailed restore: the saved state, memory and drives go into the jail under the recorded names; the jail goes after. */
    @Test
    void aJailedRestoreThatFailsRemovesItsJail() throws IOException {
        Jailer jailer = Jailer.of(NOBODY, NOBODY, dir.resolve("jails")).withBinary(Binaries.jailer());
        MachineSpec spec = machine(Binaries.firecracker()).jailer(jailer).spec();
        Snapshot snapshot = handMade("jailed", spec, stateInfo(spec), garbage());
        FirecrackerMachine vm = FirecrackerMachine.create(spec);
        assertThatThrownBy(() -> vm.startFrom(snapshot)).isInstanceOf(LaunchException.class)
                .hasMessageContaining("cannot restore the snapshot in " + snapshot.dir())
                .hasMessageContaining("Load snapshot error");
        // Under names of their own in the jail: a save of the restored machine must never write through links to them.
        assertThat(vm.vmmLog()).contains("\\\"snapshot_path\\\":\\\"/loaded-" + Snapshot.STATE + "\\\"")
                .contains("\\\"backend_path\\\":\\\"/loaded-" + FirecrackerDriver.SAVED_MEMORY + "\\\"");
        LeakCheck.assertNoneLeft(dir.resolve("jails"));
        assertThat(snapshot.dir().resolve(Snapshot.STATE)).hasBinaryContent(garbage());
    }

    /**
     * End to end, on real KVM only: a booted guest with state in memory and on a disk it wrote, saved, then restored
     * twice while the original is gone; each restore has the saved memory and disk, its own copy of the disk, and the
     * host's time. Skipped here when the host has no usable /dev/kvm.
     */
    @Test
    void aBootedGuestIsSavedAndRestoredWithItsMemoryDiskAndClock() {
        Binaries.firecracker();
        assumeTrue(Binaries.kvmBootable(), "needs /dev/kvm: " + Binaries.kvmDescription());
        MachineSpec spec = FirecrackerMachine.builder().binary(Binaries.firecracker()).image(DefaultImage.get(System.out::println))
                .memoryMib(256).drive(Drive.scratch(8 << 20).id("data")).spec();
        Snapshot snapshot;
        try (Machine original = FirecrackerMachine.create(spec).start()) {
            original.guest().succeed("echo in-memory > /tmp/state && printf ON-DISK | dd of=/dev/vda conv=fsync 2>/dev/null");
            // An hour behind when saved: a restore that did not set the clock would show it.
            original.guest().succeed("date -u -s @" + (Instant.now().getEpochSecond() - 3600) + " >/dev/null");
            snapshot = original.snapshot(dir.resolve("snap"));
            assertThat(original.state()).as("the original runs on").isEqualTo(MachineState.RUNNING);
            assertThat(snapshot.dir().resolve(FirecrackerDriver.SAVED_MEMORY)).hasSize(256L << 20);
            assertThat(snapshot.info()).containsEntry("vmm.version", Binaries.version());
            original.guest().succeed("echo changed > /tmp/state");
        }
        try (Machine a = snapshot.restore(); Machine b = snapshot.restore()) {
            for (Machine clone : List.of(a, b)) {
                assertThat(clone.as(FirecrackerMachine.class).instanceState()).isEqualTo(InstanceState.RUNNING);
                assertThat(clone.guest().succeed("cat /tmp/state")).isEqualTo("in-memory\n");
                assertThat(clone.guest().succeed("dd if=/dev/vda bs=7 count=1 2>/dev/null")).isEqualTo("ON-DISK");
                long guestClock = Long.parseLong(clone.guest().succeed("date +%s").strip());
                assertThat(guestClock).as("the restored guest's clock, set from the host's")
                        .isBetween(Instant.now().getEpochSecond() - 2, Instant.now().getEpochSecond() + 2);
            }
            a.guest().succeed("printf CLONE-A | dd of=/dev/vda conv=fsync 2>/dev/null");
            assertThat(b.guest().succeed("dd if=/dev/vda bs=7 count=1 2>/dev/null")).as("each its own disk").isEqualTo("ON-DISK");
        }
        assertThat(snapshot.dir().resolve("drive-data.raw")).exists();
        assertThatThrownBy(() -> FirecrackerMachine.create(spec.toBuilder().memoryMib(512).build()).startFrom(snapshot))
                .isInstanceOf(KilnException.class).hasMessageContaining("memoryMib was 256, and is now 512");
    }
}

package dev.kiln;

import org.junit.jupiter.api.Test;

import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Drives in a spec: names, and what each backend refuses before anything starts. */
class DriveSpecTest {
    private static final Path BASE = Path.of("/images/base.raw");

    @Test
    void drivesWithoutAnIdAreNamedByPositionAndKeepTheirOrder() {
        MachineSpec spec = MachineSpec.builder().backend(Backend.QEMU)
                .drive(Drive.overlay(BASE)).drive(Drive.scratch(1 << 20).id("data")).drive(Drive.file(Path.of("x.raw")).readOnly())
                .build();
        assertThat(spec.drives()).extracting(d -> d.id().orElseThrow()).containsExactly("disk0", "data", "disk2");
        assertThat(spec.drives().get(2).file()).isEqualTo(Path.of("x.raw").toAbsolutePath());
        assertThat(spec.toBuilder().build().drives()).isEqualTo(spec.drives());
        assertThat(spec.toBuilder().noDrives().build().drives()).isEmpty();
        assertThat(spec.toString()).contains("drives [disk0: overlay over /images/base.raw, data: scratch 1 MiB, disk2: file ");
    }

    @Test
    void aNameTakenTwiceOrAFileWrittenTwiceIsRefused() {
        assertThatThrownBy(() -> MachineSpec.builder().drive(Drive.scratch(512).id("disk1")).drive(Drive.scratch(512)).build())
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("drives: two drives are named disk1");
        assertThatThrownBy(() -> MachineSpec.builder().drive(Drive.file(BASE)).drive(Drive.file(BASE)).build())
                .hasMessageContaining("drives: " + BASE + " is written by two drives");
        Path kept = Path.of("/vm/kept.qcow2");
        assertThatThrownBy(() -> MachineSpec.builder().drive(Drive.overlay(BASE, kept)).drive(Drive.overlay(BASE, kept)).build())
                .hasMessageContaining("drives: " + kept + " is written by two drives");
        assertThat(MachineSpec.builder().drive(Drive.file(BASE).readOnly()).drive(Drive.overlay(BASE)).build().drives()).hasSize(2);
    }

    @Test
    void badDrivesFailWhereTheyAreMade() {
        assertThatThrownBy(() -> Drive.scratch(1000)).hasMessageContaining("a positive multiple of 512 bytes, got 1000");
        assertThatThrownBy(() -> Drive.scratch(0)).hasMessageContaining("got 0");
        assertThatThrownBy(() -> Drive.scratch(512).readOnly()).hasMessageContaining("read-only scratch disk");
        assertThatThrownBy(() -> Drive.scratch(512).format(Drive.Format.QCOW2)).hasMessageContaining("always raw");
        assertThatThrownBy(() -> Drive.file(BASE).id("a-name-longer-than-20")).hasMessageContaining("1 to 20 letters");
        assertThatThrownBy(() -> Drive.file(BASE).id("with space")).hasMessageContaining("got 'with space'");
        assertThatThrownBy(() -> Drive.file(null)).isInstanceOf(NullPointerException.class).hasMessageContaining("drives: file");
    }

    @Test
    void firecrackerRefusesAQcow2FileAtBuild() {
        Drive qcow2 = Drive.file(Path.of("/images/disk.qcow2")).format(Drive.Format.QCOW2).id("root");
        assertThat(MachineSpec.builder().backend(Backend.QEMU).drive(qcow2).build().drives()).hasSize(1);
        assertThatThrownBy(() -> MachineSpec.builder().backend(Backend.FIRECRACKER).drive(qcow2).build())
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("drives: Firecracker reads raw disks only, and root is qcow2")
                .hasMessageContaining("Drive.overlay(base)");
        // an overlay over a qcow2 base is fine: Kiln converts it
        assertThat(MachineSpec.builder().backend(Backend.FIRECRACKER)
                .drive(Drive.overlay(Path.of("/images/disk.qcow2")).format(Drive.Format.QCOW2)).build().drives()).hasSize(1);
    }
}

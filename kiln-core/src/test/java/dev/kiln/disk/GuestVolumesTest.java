package dev.kiln.disk;

import dev.kiln.KilnException;
import dev.kiln.support.Executables;
import dev.kiln.support.HostCommand;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** The cidata and share volumes, read back with the tools a guest's kernel would agree with: blkid, mtools, debugfs. */
class GuestVolumesTest {
    @TempDir
    Path dir;

    private static String run(String... cmd) {
        HostCommand.Result r = HostCommand.run(List.of(cmd), null, Duration.ofSeconds(60), cmd[0]);
        assertThat(r.ok()).as("%s: %s", String.join(" ", cmd), r.complaint()).isTrue();
        return r.stdout();
    }

    @Test
    void theCidataVolumeIsAFatVolumeLabelledCidataHoldingEachFile() {
        assumeTrue(Executables.find("mcopy").isPresent(), "mtools is not installed (apt-get install mtools)");
        Path cidata = dir.resolve("cidata.img");
        Map<String, String> files = new LinkedHashMap<>();
        files.put("meta-data", "instance-id: x\n");
        files.put("user-data", "#cloud-config\n{\"hostname\": \"h\"}\n");
        files.put("network-config", "version: 2\n");
        GuestVolumes.cloudInitVolume(cidata, files);
        assertThat(run("blkid", "-o", "value", "-s", "LABEL", cidata.toString()).strip()).isEqualTo("CIDATA");
        for (Map.Entry<String, String> f : files.entrySet()) {
            assertThat(run("mtype", "-i", cidata.toString(), "::" + f.getKey())).isEqualTo(f.getValue());
        }
        assertThat(cidata.resolveSibling("cidata.img.d")).doesNotExist();
    }

    @Test
    void aDirectoryDiskHoldsTheTreeWithItsModes() throws IOException {
        Path src = Files.createDirectories(dir.resolve("src/sub"));
        Files.writeString(src.resolve("a.txt"), "alpha\n");
        Files.write(src.resolveSibling("big.bin"), new byte[3 << 20]);
        Path disk = dir.resolve("share.ext4");
        GuestVolumes.directoryDisk(dir.resolve("src"), disk);
        assertThat(run("blkid", "-o", "value", "-s", "TYPE", disk.toString()).strip()).isEqualTo("ext4");
        assertThat(run("debugfs", "-R", "cat /sub/a.txt", disk.toString())).isEqualTo("alpha\n");
        assertThat(run("debugfs", "-R", "stat /big.bin", disk.toString())).contains("Size: " + (3 << 20));
    }

    @Test
    void aMissingDirectoryIsNamed() {
        Path missing = dir.resolve("nope");
        assertThatThrownBy(() -> GuestVolumes.directoryDisk(missing, dir.resolve("x.ext4")))
                .isInstanceOf(KilnException.class).hasMessageContaining(missing.toString());
    }
}

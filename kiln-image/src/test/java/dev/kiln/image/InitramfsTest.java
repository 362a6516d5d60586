package dev.kiln.image;

import org.apache.commons.compress.archivers.cpio.CpioArchiveEntry;
import org.apache.commons.compress.archivers.cpio.CpioArchiveInputStream;
import org.apache.commons.compress.archivers.cpio.CpioConstants;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.zip.GZIPInputStream;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class InitramfsTest {
    @TempDir Path tmp;

    @ParameterizedTest(name = "gzip={0}")
    @ValueSource(booleans = {false, true})
    void writesANewcArchiveTheKernelCanUnpack(boolean gzip) throws IOException {
        Path source = Files.writeString(tmp.resolve("busybox"), "not really busybox");
        Path out = tmp.resolve("initramfs");
        new Initramfs()
                .file("/init", 0755, "#!/bin/sh\n")
                .file("/bin/busybox", 0755, source)
                .symlink("/bin/sh", "busybox")
                .charDevice("/dev/console", 0600, 5, 1)
                .fifo("/etc/kiln/tick", 0600)
                .dir("/tmp", 01777)
                .write(out, gzip);

        Map<String, CpioArchiveEntry> entries = new LinkedHashMap<>();
        Map<String, String> contents = new LinkedHashMap<>();
        try (InputStream raw = Files.newInputStream(out);
             CpioArchiveInputStream cpio = new CpioArchiveInputStream(gzip ? new GZIPInputStream(raw) : raw)) {
            for (CpioArchiveEntry e; (e = cpio.getNextEntry()) != null; ) {
                entries.put(e.getName(), e);
                contents.put(e.getName(), new String(cpio.readAllBytes(), StandardCharsets.UTF_8));
            }
        }
        assertThat(entries.keySet()).containsExactly("bin", "bin/busybox", "bin/sh", "dev", "dev/console", "etc",
                "etc/kiln", "etc/kiln/tick", "init", "tmp");
        assertThat(entries.values()).allSatisfy(e -> {
            assertThat(e.getFormat()).isEqualTo(CpioConstants.FORMAT_NEW);
            assertThat(e.getUID()).isZero();
            assertThat(e.getGID()).isZero();
        });
        CpioArchiveEntry init = entries.get("init");
        assertThat(init.isRegularFile()).isTrue();
        assertThat(init.getMode() & 0777).isEqualTo(0755);
        assertThat(contents.get("init")).isEqualTo("#!/bin/sh\n");
        assertThat(contents.get("bin/busybox")).isEqualTo("not really busybox");
        CpioArchiveEntry console = entries.get("dev/console");
        assertThat(console.isCharacterDevice()).isTrue();
        assertThat(console.getRemoteDeviceMaj()).isEqualTo(5);
        assertThat(console.getRemoteDeviceMin()).isEqualTo(1);
        assertThat(entries.get("bin/sh").isSymbolicLink()).isTrue();
        assertThat(contents.get("bin/sh")).isEqualTo("busybox");
        assertThat(entries.get("etc/kiln/tick").isPipe()).isTrue();
        assertThat(entries.get("etc").isDirectory()).isTrue();
        assertThat(entries.get("tmp").getMode() & 07777).isEqualTo(01777);
    }

    @Test
    void equalInputsGiveEqualBytes() throws IOException {
        Path a = tmp.resolve("a"), b = tmp.resolve("b");
        new Initramfs().file("/x", 0644, "x").symlink("/y", "x").write(a, true);
        new Initramfs().symlink("/y", "x").file("/x", 0644, "x").write(b, true);
        assertThat(Files.readAllBytes(a)).isEqualTo(Files.readAllBytes(b));
    }

    @Test
    void refusesRelativePaths() {
        assertThatThrownBy(() -> new Initramfs().file("init", 0755, "")).hasMessageContaining("not an absolute file path");
    }
}

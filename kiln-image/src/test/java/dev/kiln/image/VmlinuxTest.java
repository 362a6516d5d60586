package dev.kiln.image;

import dev.kiln.KilnException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.zip.GZIPOutputStream;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class VmlinuxTest {
    @TempDir
    Path tmp;

    @Test
    void extractsDebiansLz4Kernel() throws Exception {
        Path kernel = DefaultImage.get(System.out::println).kernel(); // Debian's, compressed with LZ4 legacy
        byte[] image = Files.readAllBytes(kernel);
        Vmlinux.Payload p = Vmlinux.payload(image, kernel);
        assertThat(p.compression()).isEqualTo(Vmlinux.Compression.LZ4_LEGACY);
        Path out = Vmlinux.extract(kernel, tmp.resolve("vmlinux"));
        // The kernel appends the uncompressed size to its payload: the result must have exactly that size.
        int expected = ByteBuffer.wrap(image, p.offset() + p.length() - 4, 4).order(ByteOrder.LITTLE_ENDIAN).getInt();
        assertThat(Files.size(out)).isEqualTo(expected);
        assertThat(Vmlinux.cached(kernel, tmp.resolve("cache"))).exists();
    }

    @Test
    void gzipPayloadsToo() throws Exception {
        byte[] elf = fakeElf();
        ByteArrayOutputStream gz = new ByteArrayOutputStream();
        try (OutputStream o = new GZIPOutputStream(gz)) {
            o.write(elf);
        }
        Path bz = fakeBzImage(gz.toByteArray());
        Path out = Vmlinux.extract(bz, tmp.resolve("vmlinux"));
        assertThat(Files.readAllBytes(out)).isEqualTo(elf);
    }

    @Test
    void anElfIsTakenAsIs() throws Exception {
        Path elf = Files.write(tmp.resolve("already"), fakeElf());
        assertThat(Files.readAllBytes(Vmlinux.extract(elf, tmp.resolve("out")))).isEqualTo(fakeElf());
    }

    @Test
    void clearErrors() throws Exception {
        Path junk = Files.write(tmp.resolve("junk"), new byte[4096]);
        assertThatThrownBy(() -> Vmlinux.extract(junk, tmp.resolve("o"))).isInstanceOf(KilnException.class).hasMessageContaining("neither an ELF vmlinux nor a bzImage");
        Path zstd = fakeBzImage(new byte[] {0x28, (byte) 0xb5, 0x2f, (byte) 0xfd, 1, 2, 3, 4});
        assertThatThrownBy(() -> Vmlinux.extract(zstd, tmp.resolve("o"))).hasMessageContaining("ZSTD").hasMessageContaining("extract-vmlinux");
        assertThat(Files.exists(tmp.resolve("o"))).isFalse();
    }

    private static byte[] fakeElf() {
        byte[] e = new byte[64];
        e[0] = 0x7f; e[1] = 'E'; e[2] = 'L'; e[3] = 'F'; e[4] = 2; e[18] = 0x3e;
        return e;
    }

    /** A minimal bzImage: setup header with HdrS, protocol 2.08, one setup sector, and the payload after it. */
    private Path fakeBzImage(byte[] payload) throws IOException {
        int setupSects = 1;
        int start = (setupSects + 1) * 512;
        ByteBuffer b = ByteBuffer.allocate(start + payload.length).order(ByteOrder.LITTLE_ENDIAN);
        b.put(0x1f1, (byte) setupSects);
        b.put(0x202, (byte) 'H').put(0x203, (byte) 'd').put(0x204, (byte) 'r').put(0x205, (byte) 'S');
        b.putShort(0x206, (short) 0x20f);
        b.putInt(0x248, 0);
        b.putInt(0x24c, payload.length);
        b.put(start, payload);
        return Files.write(tmp.resolve("bzImage-" + payload.length), b.array());
    }
}

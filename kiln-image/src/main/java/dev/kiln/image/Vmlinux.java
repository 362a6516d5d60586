package dev.kiln.image;

import dev.kiln.KilnException;
import org.apache.commons.compress.compressors.bzip2.BZip2CompressorInputStream;
import org.apache.commons.compress.compressors.lz4.BlockLZ4CompressorInputStream;
import org.apache.commons.compress.compressors.lzma.LZMACompressorInputStream;
import org.apache.commons.compress.compressors.xz.XZCompressorInputStream;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.zip.GZIPInputStream;

/**
 * Firecracker boots an uncompressed ELF {@code vmlinux} on x86_64, while distributions ship a compressed
 * {@code bzImage}. This finds the compressed kernel inside the bzImage (the setup header's
 * {@code payload_offset}/{@code payload_length}) and decompresses it: gzip, LZ4 (the kernel's legacy
 * frame format, which Debian uses), xz, lzma and bzip2. zstd is not supported (Java has no pure decoder
 * here); such a kernel fails with a clear error.
 */
public final class Vmlinux {
    private static final byte[] ELF = {0x7f, 'E', 'L', 'F'};
    private static final int LZ4_LEGACY_MAGIC = 0x184C2102;
    /** The kernel's LZ4 legacy blocks decompress to at most 8 MiB each. */
    private static final int LZ4_LEGACY_MAX_BLOCK = 8 << 20;

    /** The compressions a bzImage payload can have. */
    public enum Compression { GZIP, LZ4_LEGACY, XZ, LZMA, BZIP2, ZSTD, LZO, NONE }

    private Vmlinux() {}

    /** Writes the ELF kernel inside {@code bzImage} to {@code out} (atomically); a vmlinux given as input is copied. */
    public static Path extract(Path bzImage, Path out) {
        try {
            byte[] image = Files.readAllBytes(bzImage);
            Path tmp = Files.createTempFile(out.toAbsolutePath().getParent(), out.getFileName() + ".", ".part");
            try {
                try (OutputStream os = Files.newOutputStream(tmp, StandardOpenOption.TRUNCATE_EXISTING)) {
                    if (startsWith(image, 0, ELF)) {
                        os.write(image);
                    } else {
                        Payload p = payload(image, bzImage);
                        decompress(p, image, os, bzImage);
                    }
                }
                checkElf(tmp, bzImage);
                Files.move(tmp, out, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
                return out;
            } finally {
                Files.deleteIfExists(tmp);
            }
        } catch (IOException e) {
            throw new KilnException("cannot extract vmlinux from " + bzImage + ": " + e.getMessage(), e);
        }
    }

    /**
     * The vmlinux of {@code bzImage}, extracted once into {@code cacheDir} (named after the image, its size
     * and modification time, so a changed image is extracted again).
     */
    public static Path cached(Path bzImage, Path cacheDir) {
        try {
            Files.createDirectories(cacheDir);
            String key = bzImage.getFileName() + "-" + Files.size(bzImage) + "-" + Files.getLastModifiedTime(bzImage).toMillis();
            Path out = cacheDir.resolve("vmlinux-" + key);
            if (Files.exists(out)) return out;
            return extract(bzImage, out);
        } catch (IOException e) {
            throw new KilnException("cannot use vmlinux cache " + cacheDir + ": " + e.getMessage(), e);
        }
    }

    /** Where the compressed kernel lies in a bzImage, and how it is compressed. */
    public record Payload(int offset, int length, Compression compression) {}

    public static Payload payload(byte[] image, Path name) {
        if (image.length < 0x250 || image[0x202] != 'H' || image[0x203] != 'd' || image[0x204] != 'r' || image[0x205] != 'S') {
            throw new KilnException(name + " is neither an ELF vmlinux nor a bzImage (no 'HdrS' setup header)");
        }
        ByteBuffer b = ByteBuffer.wrap(image).order(ByteOrder.LITTLE_ENDIAN);
        int version = b.getShort(0x206) & 0xffff;
        if (version < 0x208) throw new KilnException(name + " has boot protocol " + Integer.toHexString(version) + "; payload fields need 2.08 or newer");
        int setupSects = image[0x1f1] & 0xff;
        if (setupSects == 0) setupSects = 4;
        int offset = (setupSects + 1) * 512 + b.getInt(0x248);
        int length = b.getInt(0x24c);
        if (offset < 0 || length <= 0 || offset + (long) length > image.length) {
            throw new KilnException(name + " has a payload (offset " + offset + ", length " + length + ") outside the file");
        }
        return new Payload(offset, length, detect(image, offset));
    }

    static Compression detect(byte[] d, int at) {
        if (startsWith(d, at, new byte[] {0x1f, (byte) 0x8b})) return Compression.GZIP;
        if (startsWith(d, at, new byte[] {0x02, 0x21, 0x4c, 0x18})) return Compression.LZ4_LEGACY;
        if (startsWith(d, at, new byte[] {(byte) 0xfd, '7', 'z', 'X', 'Z', 0})) return Compression.XZ;
        if (startsWith(d, at, new byte[] {0x28, (byte) 0xb5, 0x2f, (byte) 0xfd})) return Compression.ZSTD;
        if (startsWith(d, at, new byte[] {'B', 'Z', 'h'})) return Compression.BZIP2;
        if (startsWith(d, at, new byte[] {(byte) 0x89, 'L', 'Z', 'O'})) return Compression.LZO;
        if (startsWith(d, at, new byte[] {0x5d, 0, 0})) return Compression.LZMA;
        if (startsWith(d, at, ELF)) return Compression.NONE;
        return null;
    }

    private static void decompress(Payload p, byte[] image, OutputStream out, Path name) throws IOException {
        InputStream in = new ByteArrayInputStream(image, p.offset(), p.length());
        if (p.compression() == null) throw new KilnException(name + ": the payload's compression is not recognized");
        switch (p.compression()) {
            case GZIP -> copy(new GZIPInputStream(in, 1 << 16), out);
            case XZ -> copy(new XZCompressorInputStream(in, true), out);
            case LZMA -> copy(new LZMACompressorInputStream(in), out);
            case BZIP2 -> copy(new BZip2CompressorInputStream(in, true), out);
            case LZ4_LEGACY -> lz4Legacy(image, p.offset(), p.length(), out, name);
            case NONE -> out.write(image, p.offset(), p.length());
            case ZSTD, LZO -> throw new KilnException(name + " holds a " + p.compression()
                    + "-compressed kernel, which Kiln cannot decompress; extract the vmlinux with the kernel's "
                    + "scripts/extract-vmlinux and pass that file instead");
        }
    }

    /**
     * LZ4's legacy frames: the magic, then blocks each preceded by its compressed size (4 bytes, little
     * endian), each decompressing on its own. The kernel appends the uncompressed size (4 bytes): a length
     * that would run past the end marks that trailer.
     */
    static void lz4Legacy(byte[] d, int offset, int length, OutputStream out, Path name) throws IOException {
        ByteBuffer b = ByteBuffer.wrap(d, offset, length).order(ByteOrder.LITTLE_ENDIAN);
        if (b.getInt() != LZ4_LEGACY_MAGIC) throw new KilnException(name + ": not an LZ4 legacy stream");
        byte[] chunk = new byte[LZ4_LEGACY_MAX_BLOCK];
        while (b.remaining() >= 4) {
            int size = b.getInt();
            if (size == LZ4_LEGACY_MAGIC) continue; // concatenated streams
            if (size <= 0 || size > b.remaining()) break; // the size trailer
            try (InputStream block = new BlockLZ4CompressorInputStream(new ByteArrayInputStream(d, b.position(), size))) {
                int n;
                while ((n = block.readNBytes(chunk, 0, chunk.length)) > 0) out.write(chunk, 0, n);
            }
            b.position(b.position() + size);
        }
    }

    private static void copy(InputStream in, OutputStream out) throws IOException {
        try (in) {
            in.transferTo(out);
        }
    }

    private static void checkElf(Path file, Path source) throws IOException {
        try (FileChannel ch = FileChannel.open(file)) {
            ByteBuffer h = ByteBuffer.allocate(20).order(ByteOrder.LITTLE_ENDIAN);
            ch.read(h, 0);
            byte[] a = h.array();
            if (!startsWith(a, 0, ELF)) throw new KilnException("what " + source + " holds did not decompress to an ELF image");
            if (a[4] != 2 || (h.getShort(18) & 0xffff) != 0x3e) {
                throw new KilnException("the kernel in " + source + " is not a 64-bit x86 ELF (class " + a[4] + ", machine 0x"
                        + Integer.toHexString(h.getShort(18) & 0xffff) + ")");
            }
        }
    }

    private static boolean startsWith(byte[] d, int at, byte[] prefix) {
        if (at < 0 || at + prefix.length > d.length) return false;
        for (int i = 0; i < prefix.length; i++) if (d[at + i] != prefix[i]) return false;
        return true;
    }
}

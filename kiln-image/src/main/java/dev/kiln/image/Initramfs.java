package dev.kiln.image;

import dev.kiln.KilnException;
import org.apache.commons.compress.archivers.cpio.CpioArchiveEntry;
import org.apache.commons.compress.archivers.cpio.CpioArchiveOutputStream;
import org.apache.commons.compress.archivers.cpio.CpioConstants;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.TreeMap;
import java.util.zip.Deflater;
import java.util.zip.GZIPOutputStream;

/**
 * An initramfs being assembled: a tree of entries written as a {@code newc} cpio, owned by root, dated 0
 * so that equal inputs give equal bytes. Paths are absolute ("/bin/sh"); missing parents become 0755 dirs.
 */
final class Initramfs {
    private record Entry(long mode, byte[] data, Path source, int rdevMajor, int rdevMinor) {
        long size() {
            try {
                return data != null ? data.length : source != null ? Files.size(source) : 0;
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }

    // Sorted by name, so that a directory always comes before what it holds.
    private final Map<String, Entry> entries = new TreeMap<>();

    Initramfs dir(String path, int perm) {
        return put(path, new Entry(CpioConstants.C_ISDIR | perm, null, null, 0, 0));
    }

    Initramfs file(String path, int perm, Path source) {
        return put(path, new Entry(CpioConstants.C_ISREG | perm, null, source, 0, 0));
    }

    Initramfs file(String path, int perm, byte[] data) {
        return put(path, new Entry(CpioConstants.C_ISREG | perm, data, null, 0, 0));
    }

    Initramfs file(String path, int perm, String text) {
        return file(path, perm, text.getBytes(StandardCharsets.UTF_8));
    }

    Initramfs symlink(String path, String target) {
        return put(path, new Entry(CpioConstants.C_ISLNK | 0777, target.getBytes(StandardCharsets.UTF_8), null, 0, 0));
    }

    Initramfs charDevice(String path, int perm, int major, int minor) {
        return put(path, new Entry(CpioConstants.C_ISCHR | perm, null, null, major, minor));
    }

    Initramfs fifo(String path, int perm) {
        return put(path, new Entry(CpioConstants.C_ISFIFO | perm, null, null, 0, 0));
    }

    boolean contains(String path) {
        return entries.containsKey(name(path));
    }

    /** Bytes of file contents and link targets, before cpio headers and compression. */
    long contentBytes() {
        return entries.values().stream().mapToLong(Entry::size).sum();
    }

    int size() {
        return entries.size();
    }

    private Initramfs put(String path, Entry e) {
        String name = name(path);
        for (int slash = name.indexOf('/'); slash > 0; slash = name.indexOf('/', slash + 1))
            entries.putIfAbsent(name.substring(0, slash), new Entry(CpioConstants.C_ISDIR | 0755, null, null, 0, 0));
        entries.put(name, e);
        return this;
    }

    private static String name(String path) {
        if (!path.startsWith("/") || path.length() < 2 || path.endsWith("/") || path.contains("//"))
            throw new IllegalArgumentException("not an absolute file path: " + path);
        return path.substring(1);
    }

    /** Writes the archive to {@code out}, gzip-compressed or not, and returns its size in bytes. */
    long write(Path out, boolean gzip) {
        try (OutputStream file = new BufferedOutputStream(Files.newOutputStream(out), 1 << 16)) {
            OutputStream sink = gzip ? new GZIPOutputStream(file, 1 << 16) {{ def.setLevel(Deflater.BEST_COMPRESSION); }} : file;
            try (CpioArchiveOutputStream cpio = new CpioArchiveOutputStream(sink, CpioConstants.FORMAT_NEW,
                    CpioConstants.BLOCK_SIZE, "UTF-8")) {
                for (var e : entries.entrySet()) writeEntry(cpio, e.getKey(), e.getValue());
            }
        } catch (IOException | UncheckedIOException e) {
            throw new KilnException("cannot write initramfs " + out + ": " + e.getMessage(), e);
        }
        try {
            return Files.size(out);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static void writeEntry(CpioArchiveOutputStream cpio, String name, Entry e) throws IOException {
        CpioArchiveEntry ce = new CpioArchiveEntry(CpioConstants.FORMAT_NEW, name, e.size());
        ce.setMode(e.mode());
        ce.setUID(0);
        ce.setGID(0);
        ce.setTime(0);
        ce.setNumberOfLinks((e.mode() & CpioConstants.S_IFMT) == CpioConstants.C_ISDIR ? 2 : 1);
        ce.setRemoteDeviceMaj(e.rdevMajor());
        ce.setRemoteDeviceMin(e.rdevMinor());
        cpio.putArchiveEntry(ce);
        if (e.data() != null) cpio.write(e.data());
        else if (e.source() != null) Files.copy(e.source(), cpio);
        cpio.closeArchiveEntry();
    }
}

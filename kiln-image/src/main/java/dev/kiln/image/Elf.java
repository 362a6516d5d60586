package dev.kiln.image;

import dev.kiln.KilnException;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/** The few facts Kiln reads from a little-endian ELF64 file: interpreter, DT_NEEDED, and a section's bytes. */
final class Elf {
    private static final int PT_LOAD = 1, PT_DYNAMIC = 2, PT_INTERP = 3;
    private static final long DT_NULL = 0, DT_NEEDED = 1, DT_STRTAB = 5;

    private final String name;
    private final ByteBuffer b;

    private Elf(String name, byte[] bytes) {
        this.name = name;
        this.b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        if (bytes.length < 64 || b.getInt(0) != 0x464c457f) throw bad("not an ELF file");
        if (b.get(4) != 2 || b.get(5) != 1) throw bad("not a little-endian 64-bit ELF file");
    }

    static Elf read(Path file) {
        try {
            return new Elf(file.toString(), Files.readAllBytes(file));
        } catch (IOException e) {
            throw new KilnException("cannot read " + file + ": " + e.getMessage(), e);
        }
    }

    static Elf of(String name, byte[] bytes) {
        return new Elf(name, bytes);
    }

    /** The program interpreter (PT_INTERP), e.g. /lib64/ld-linux-x86-64.so.2; empty for static files. */
    Optional<String> interpreter() {
        for (int i = 0; i < phnum(); i++) {
            int ph = phoff(i);
            if (b.getInt(ph) == PT_INTERP) return Optional.of(cString(offset(ph + 8)));
        }
        return Optional.empty();
    }

    /** The DT_NEEDED sonames, in file order. */
    List<String> needed() {
        List<Long> names = new ArrayList<>();
        long strtab = -1;
        for (int i = 0; i < phnum(); i++) {
            int ph = phoff(i);
            if (b.getInt(ph) != PT_DYNAMIC) continue;
            int at = offset(ph + 8), end = at + offset(ph + 32);
            for (; at + 16 <= end; at += 16) {
                long tag = b.getLong(at), val = b.getLong(at + 8);
                if (tag == DT_NULL) break;
                if (tag == DT_NEEDED) names.add(val);
                if (tag == DT_STRTAB) strtab = val;
            }
        }
        if (names.isEmpty()) return List.of();
        if (strtab < 0) throw bad("dynamic section has DT_NEEDED but no DT_STRTAB");
        long strtabOffset = fileOffset(strtab);
        return names.stream().map(n -> cString(Math.toIntExact(strtabOffset + n))).toList();
    }

    /** The contents of the named section (e.g. .modinfo of a kernel module), or empty. */
    Optional<byte[]> section(String wanted) {
        long shoff = b.getLong(40);
        int shentsize = Short.toUnsignedInt(b.getShort(58)), shnum = Short.toUnsignedInt(b.getShort(60));
        int shstrndx = Short.toUnsignedInt(b.getShort(62));
        if (shoff == 0 || shnum == 0) return Optional.empty();
        int names = offset(Math.toIntExact(shoff + (long) shstrndx * shentsize) + 24);
        for (int i = 0; i < shnum; i++) {
            int sh = Math.toIntExact(shoff + (long) i * shentsize);
            if (!cString(names + b.getInt(sh)).equals(wanted)) continue;
            byte[] data = new byte[offset(sh + 32)];
            b.get(offset(sh + 24), data);
            return Optional.of(data);
        }
        return Optional.empty();
    }

    /** A virtual address turned into a file offset through the PT_LOAD segment that maps it. */
    private long fileOffset(long vaddr) {
        for (int i = 0; i < phnum(); i++) {
            int ph = phoff(i);
            long off = b.getLong(ph + 8), va = b.getLong(ph + 16), filesz = b.getLong(ph + 32);
            if (b.getInt(ph) == PT_LOAD && vaddr >= va && vaddr < va + filesz) return off + (vaddr - va);
        }
        throw bad("address 0x" + Long.toHexString(vaddr) + " is in no PT_LOAD segment");
    }

    private int phnum() {
        return Short.toUnsignedInt(b.getShort(56));
    }

    private int phoff(int i) {
        return Math.toIntExact(b.getLong(32) + (long) i * Short.toUnsignedInt(b.getShort(54)));
    }

    private int offset(int at) {
        long v = b.getLong(at);
        if (v < 0 || v > b.capacity()) throw bad("offset " + v + " beyond the end of the file");
        return (int) v;
    }

    private String cString(int at) {
        int end = at;
        while (end < b.capacity() && b.get(end) != 0) end++;
        byte[] s = new byte[end - at];
        b.get(at, s);
        return new String(s, StandardCharsets.UTF_8);
    }

    private KilnException bad(String why) {
        return new KilnException("cannot parse ELF file " + name + ": " + why);
    }
}

package dev.kiln.support;

import dev.kiln.KilnException;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Function;

/**
 * A binary's version line, asked once per binary file and kept in {@code <cache>/versions}: running
 * {@code qemu-system-x86_64 --version} costs some 60 ms, once per process otherwise. The key is the file's real path,
 * size and modification time, so that an upgraded binary is asked again.
 */
public final class VersionCache {
    private static final Map<String, String> KNOWN = new ConcurrentHashMap<>();

    private VersionCache() {}

    /** The version of {@code binary} (found on PATH when it has no slash), from the cache or from {@code ask}. */
    public static String of(String binary, Function<String, String> ask) {
        Path file = Executables.find(binary).orElse(null);
        if (file == null) return ask.apply(binary); // says what is wrong in its own words
        String key;
        try {
            Path real = file.toRealPath();
            key = real + "\0" + Files.size(real) + "\0" + Files.getLastModifiedTime(real).toMillis();
        } catch (IOException e) {
            return ask.apply(binary);
        }
        return KNOWN.computeIfAbsent(key, k -> {
            Path entry = KilnCache.root().resolve("versions").resolve(hash(k));
            try {
                if (Files.isRegularFile(entry)) return Files.readString(entry).strip();
            } catch (IOException e) {
                // ask again
            }
            String version = ask.apply(binary);
            try {
                Files.createDirectories(entry.getParent());
                Path tmp = Files.createTempFile(entry.getParent(), ".version-", "");
                Files.writeString(tmp, version + "\n");
                Files.move(tmp, entry, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (IOException e) {
                // a cache that cannot be written costs the next process the same question
            }
            return version;
        });
    }

    private static String hash(String key) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(key.getBytes(StandardCharsets.UTF_8)), 0, 16);
        } catch (NoSuchAlgorithmException e) {
            throw new KilnException("no SHA-256", e);
        }
    }
}

package dev.kiln.qemu;

import org.junit.jupiter.api.Assumptions;

import java.nio.file.Files;
import java.nio.file.Path;

/** Skips, with the reason shown, when there is no QEMU to test against. */
final class QemuAvailable {
    static void require() {
        String bin = System.getenv().getOrDefault("KILN_QEMU", "qemu-system-x86_64");
        boolean found = bin.contains("/") ? Files.isExecutable(Path.of(bin))
                : java.util.Arrays.stream(System.getenv().getOrDefault("PATH", "").split(":"))
                        .anyMatch(d -> !d.isEmpty() && Files.isExecutable(Path.of(d, bin)));
        Assumptions.assumeTrue(found, "QEMU not found (" + bin + "): install qemu-system-x86 to run this test");
    }
}

package dev.kiln.qemu;

import dev.kiln.support.Executables;
import org.junit.jupiter.api.Assumptions;


/** Skips, with the reason shown, when there is no QEMU to test against. */
final class QemuAvailable {
    static void require() {
        String bin = System.getenv().getOrDefault("KILN_QEMU", "qemu-system-x86_64");
        Assumptions.assumeTrue(Executables.find(bin).isPresent(), "QEMU not found (" + bin + "): install qemu-system-x86 to run this test");
    }
}

package dev.kiln.firecracker;

import dev.kiln.support.Executables;
import org.junit.jupiter.api.Assumptions;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/** The real binaries the process tests need; tests skip with the reason shown when they are absent. */
final class Binaries {
    private Binaries() {}

    static String firecracker() {
        String bin = System.getenv("FIRECRACKER_BIN");
        Assumptions.assumeTrue(bin != null && !bin.isBlank(),
                "FIRECRACKER_BIN is not set: point it at a Firecracker release binary to run this test");
        Assumptions.assumeTrue(Executables.find(bin).isPresent(), "FIRECRACKER_BIN=" + bin + " is not an executable file");
        return bin;
    }

    static String jailer() {
        firecracker();
        String bin = System.getenv("JAILER_BIN");
        Assumptions.assumeTrue(bin != null && !bin.isBlank(),
                "JAILER_BIN is not set: point it at the jailer of a Firecracker release to run this test");
        Assumptions.assumeTrue(Executables.find(bin).isPresent(), "JAILER_BIN=" + bin + " is not an executable file");
        Assumptions.assumeTrue("root".equals(System.getProperty("user.name")), "the jailer needs root");
        return bin;
    }

    /**
     * A Firecracker binary of another release than {@code FIRECRACKER_BIN}, next to it ({@code firecracker-v*}, as in
     * /opt/firecracker), or empty.
     */
    static java.util.Optional<String> anotherRelease() {
        Path bin = Path.of(firecracker()).toAbsolutePath();
        String mine = version();
        try (var siblings = Files.list(bin.getParent())) {
            return siblings.filter(p -> p.getFileName().toString().matches("firecracker-v[0-9.]+") && Files.isExecutable(p))
                    .map(Path::toString).filter(p -> !version(p).equals(mine)).findFirst();
        } catch (IOException e) {
            return java.util.Optional.empty();
        }
    }

    /** "1.7.0" from {@code firecracker --version}. */
    static String version() {
        return version(firecracker());
    }

    static String version(String binary) {
        try {
            Process p = new ProcessBuilder(binary, "--version").redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes());
            p.waitFor(10, TimeUnit.SECONDS);
            var m = java.util.regex.Pattern.compile("Firecracker v(\\S+)").matcher(out);
            if (!m.find()) throw new IllegalStateException("no version in: " + out);
            return m.group(1);
        } catch (IOException e) {
            throw new IllegalStateException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    /** True when the binary is at least {@code major.minor}. */
    static boolean atLeast(int major, int minor) {
        String[] v = version().split("[.-]");
        int ma = Integer.parseInt(v[0]), mi = Integer.parseInt(v[1]);
        return ma > major || ma == major && mi >= minor;
    }

    /**
     * Guest boots need real KVM. kvm_pvm (a software nested hypervisor, as on the machines Kiln is built on)
     * makes the guest die at its first instruction.
     */
    static void requireBootableKvm() {
        firecracker();
        Assumptions.assumeTrue(kvmBootable(), "booting a guest needs real KVM (kvm_intel or kvm_amd, not kvm_pvm): " + kvmDescription());
    }

    /**
     * Firecracker makes its VM on /dev/kvm at {@code InstanceStart}, even when the guest cannot run there (kvm_pvm):
     * tests of what comes after need the device.
     */
    static void requireKvmDevice() {
        firecracker();
        Assumptions.assumeTrue(Files.exists(Path.of("/dev/kvm")), "Firecracker's InstanceStart makes its VM on /dev/kvm, which this host lacks");
    }

    static boolean kvmBootable() {
        boolean kvm = Files.isReadable(Path.of("/dev/kvm")) && Files.isWritable(Path.of("/dev/kvm"));
        boolean pvm = Files.exists(Path.of("/sys/module/kvm_pvm"));
        boolean hw = Files.exists(Path.of("/sys/module/kvm_intel")) || Files.exists(Path.of("/sys/module/kvm_amd"));
        return kvm && hw && !pvm;
    }

    static String kvmDescription() {
        boolean kvm = Files.isReadable(Path.of("/dev/kvm")) && Files.isWritable(Path.of("/dev/kvm"));
        boolean pvm = Files.exists(Path.of("/sys/module/kvm_pvm"));
        boolean hw = Files.exists(Path.of("/sys/module/kvm_intel")) || Files.exists(Path.of("/sys/module/kvm_amd"));
        return "this host has " + (!kvm ? "no usable /dev/kvm" : pvm ? "kvm_pvm" : "no hardware KVM module");
    }
}

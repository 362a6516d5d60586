package dev.kiln.cli;

import dev.kiln.image.DefaultImage;
import dev.kiln.qemu.Accelerator;
import picocli.CommandLine.Command;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;

/** {@code kiln doctor}: what Kiln finds on this host, and what is missing. */
@Command(name = "doctor", mixinStandardHelpOptions = true,
        description = "Checks QEMU, the accelerator, the default image's inputs and Java.")
final class DoctorCommand implements Callable<Integer> {
    @Override
    public Integer call() {
        int problems = 0;
        String qemu = System.getenv().getOrDefault("KILN_QEMU", "qemu-system-x86_64");
        String version = firstLine(qemu, "--version");
        if (version == null) {
            System.out.println("QEMU: NOT FOUND (" + qemu + "): apt-get install qemu-system-x86, or set KILN_QEMU");
            problems++;
        } else {
            System.out.println("QEMU: " + qemu + ": " + version);
        }
        Accelerator requested = Accelerator.fromEnvironment();
        System.out.println("accelerator: " + requested.resolve()
                + (System.getenv("KILN_ACCEL") != null ? " [KILN_ACCEL=" + System.getenv("KILN_ACCEL") + "]" : ""));
        var d = DefaultImage.describe();
        d.lines().forEach(System.out::println);
        if (d.problem() != null) problems++;
        System.out.println("Java: " + Runtime.version() + " (" + System.getProperty("java.vendor") + ", "
                + System.getProperty("java.home") + ")");
        System.out.println(problems == 0 ? "doctor: all good" : "doctor: " + problems + " problem(s)");
        return problems == 0 ? 0 : 1;
    }

    private static String firstLine(String... cmd) {
        try {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                String line = r.readLine();
                if (!p.waitFor(10, TimeUnit.SECONDS)) p.destroyForcibly();
                return p.exitValue() == 0 ? line : null;
            }
        } catch (Exception e) {
            return null;
        }
    }
}

package dev.kiln.bench;

import dev.kiln.ExecRequest;
import dev.kiln.ExecResult;
import dev.kiln.GuestImage;
import dev.kiln.GuestProcess;
import dev.kiln.image.DefaultImage;
import dev.kiln.qemu.QemuMachine;

import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;

/**
 * Exec over the exec ports in one booted default-image guest, each figure beside its peer measured in the same run:
 * {@code exec("true")} against a fork+exec of /bin/true inside the guest (its own clock); the first byte of a started
 * {@code echo} and a line's round trip through a running {@code cat}; 100 MiB streamed from a process against
 * {@code copyOut} of a 100 MiB file.
 *
 * <p>{@code java -cp 'kiln-bench/target/kiln-bench-*.jar:kiln-bench/target/lib/*' --enable-native-access=ALL-UNNAMED
 * dev.kiln.bench.ExecBenchmark [rounds]}
 */
public final class ExecBenchmark {
    private static final long HUNDRED_MIB = 100L << 20;

    public static void main(String[] args) throws Exception {
        int rounds = args.length > 0 ? Integer.parseInt(args[0]) : 5;
        GuestImage image = DefaultImage.get(System.err::println);
        try (QemuMachine vm = QemuMachine.builder().image(image).memoryMib(512).start()) {
            System.out.println("accelerator: " + vm.accelerator());
            Samples exec = new Samples("exec(\"true\") over the exec ports (host wall time)");
            Samples forkExec = new Samples("fork+exec of /bin/true inside the guest (its clock, per call)");
            Samples firstByte = new Samples("start(\"echo\", \"x\") to its first stdout byte on the host");
            Samples echo = new Samples("a line's round trip through a running cat (stdin to stdout)");
            Samples stream = new Samples("100 MiB from `head -c` streamed to the host (stdout)", "MiB/s");
            Samples copyOut = new Samples("copyOut of a 100 MiB guest file (agent)", "MiB/s");
            for (int i = 0; i < 20; i++) vm.guest().exec("true");
            for (int round = 0; round < rounds; round++) {
                for (int i = 0; i < 40; i++) {
                    long t = System.nanoTime();
                    vm.guest().exec("true").orThrow();
                    exec.addNanos(System.nanoTime() - t);
                }
                ExecResult r = vm.guest().exec("sh", "-c",
                        "s=$(cat /proc/uptime); i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done; e=$(cat /proc/uptime); echo $s $e");
                String[] f = r.stdoutText().trim().split("\\s+");
                forkExec.add((Double.parseDouble(f[2]) - Double.parseDouble(f[0])) * 1000 / 200);
                for (int i = 0; i < 10; i++) {
                    long t = System.nanoTime();
                    try (GuestProcess p = vm.guest().start("echo", "x")) {
                        if (p.stdout().read() < 0) throw new IllegalStateException("echo printed nothing");
                        firstByte.addNanos(System.nanoTime() - t);
                        p.waitFor(java.time.Duration.ofSeconds(30));
                    }
                }
                try (GuestProcess cat = vm.guest().start("cat")) {
                    OutputStream in = cat.stdin();
                    InputStream out = cat.stdout();
                    for (int i = 0; i < 20; i++) {
                        long t = System.nanoTime();
                        in.write('\n');
                        if (out.read() != '\n') throw new IllegalStateException("cat sent something else back");
                        echo.addNanos(System.nanoTime() - t);
                    }
                    in.close();
                    cat.waitFor(java.time.Duration.ofSeconds(30));
                }
                long t = System.nanoTime();
                try (GuestProcess p = vm.guest().start("head", "-c", Long.toString(HUNDRED_MIB), "/dev/zero")) {
                    long n = p.stdout().transferTo(OutputStream.nullOutputStream());
                    if (n != HUNDRED_MIB) throw new IllegalStateException("streamed " + n + " bytes");
                    p.waitFor(java.time.Duration.ofMinutes(5));
                }
                stream.add(100 / ((System.nanoTime() - t) / 1e9));
                vm.guest().exec("sh", "-c", "head -c " + HUNDRED_MIB + " /dev/zero > /run/big").orThrow();
                Path host = Files.createTempFile("kiln-bench-", ".bin");
                try {
                    t = System.nanoTime();
                    vm.guest().copyOut("/run/big", host);
                    copyOut.add(100 / ((System.nanoTime() - t) / 1e9));
                } finally {
                    Files.deleteIfExists(host);
                    vm.guest().exec("rm", "-f", "/run/big");
                }
            }
            for (Samples s : new Samples[] {exec, forkExec, firstByte, echo, stream, copyOut}) {
                System.out.printf(Locale.ROOT, "%-75s %s, n=%d%n", s.name, s.summary(), s.n());
            }
            System.out.printf(Locale.ROOT, "ratio exec / guest fork+exec: %.2f%n", exec.median() / forkExec.median());
            System.out.printf(Locale.ROOT, "ratio stream / copyOut: %.2f%n", stream.median() / copyOut.median());
        }
    }
}

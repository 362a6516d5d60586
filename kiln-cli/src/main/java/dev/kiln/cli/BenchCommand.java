package dev.kiln.cli;

import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/**
 * {@code kiln bench}: Kiln against its peers in one run (raw QEMU, QEMU's own Python harness), from the
 * kiln-bench module next to this CLI. It runs in a JVM of its own with the default JIT: the CLI's JVM is
 * tuned for a quick start (C1 only), which would understate Kiln's warm figures.
 */
@Command(name = "bench", mixinStandardHelpOptions = true,
        description = "Measures Kiln against raw QEMU and QEMU's own Python harness (QEMUMachine, qemu.qmp), "
                + "interleaved in one run: launch/quit, QMP round trip, cold boot, exec, teardown, peak RSS, "
                + "the JVM's heap and threads per machine. Prints the table and writes results.md, "
                + "results.json and boot-timeline.png.")
final class BenchCommand implements Callable<Integer> {
    @Option(names = "--runs", description = "boots of each kind, twice as many launch/quit cycles (default 10)")
    Integer runs;

    @Option(names = "--qmp", description = "QMP round trips per client (default 2000)")
    Integer qmp;

    @Option(names = "--machines", description = "paused machines at once for the JVM's cost per machine (default 8)")
    Integer machines;

    @Option(names = "--booted", description = "booted machines for the same (default 4; 0: skip)")
    Integer booted;

    @Option(names = "--out", description = "results folder (default kiln-bench/target/results/<date-time>)")
    Path out;

    @Option(names = "--only", split = ",", description = "only these parts: launch, qmp, boot, memory, debian, snapshot, cloud")
    List<String> only;

    @Option(names = "--no-python", description = "skip QEMU's Python harness")
    boolean noPython;

    @Override
    public Integer call() throws IOException, InterruptedException {
        Path benchHome = benchHome();
        Path jar = benchHome.resolve("target/kiln-bench-0.1.0-SNAPSHOT.jar");
        if (!Files.isRegularFile(jar)) {
            throw new IllegalStateException("kiln-bench is not built (no " + jar + "): run `mvn -pl kiln-bench -am package "
                    + "-DskipTests` in " + benchHome.getParent() + ", or kiln-bench/run, which builds and runs it");
        }
        String java = ProcessHandle.current().info().command().orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        List<String> cmd = new ArrayList<>(List.of(java, "--enable-native-access=ALL-UNNAMED",
                "-Dkiln.bench.home=" + benchHome, "-cp", jar + ":" + benchHome.resolve("target/lib") + "/*",
                "dev.kiln.bench.PeerBenchmark"));
        if (runs != null) cmd.addAll(List.of("--runs", runs.toString()));
        if (qmp != null) cmd.addAll(List.of("--qmp", qmp.toString()));
        if (machines != null) cmd.addAll(List.of("--machines", machines.toString()));
        if (booted != null) cmd.addAll(List.of("--booted", booted.toString()));
        if (out != null) cmd.addAll(List.of("--out", out.toAbsolutePath().toString()));
        if (only != null) cmd.addAll(List.of("--only", String.join(",", only)));
        if (noPython) cmd.add("--no-python");
        Process p = new ProcessBuilder(cmd).inheritIO().start();
        try {
            return p.waitFor();
        } finally {
            if (p.isAlive()) { // interrupted: do not leave the bench and its VMs running
                p.destroy();
                p.waitFor();
            }
        }
    }

    /** kiln-bench's folder: $KILN_BENCH_HOME, else beside this CLI's module (…/kiln-cli/target/kiln-cli-….jar). */
    private static Path benchHome() {
        String env = System.getenv("KILN_BENCH_HOME");
        if (env != null && !env.isBlank()) return Path.of(env).toAbsolutePath();
        try {
            Path code = Path.of(BenchCommand.class.getProtectionDomain().getCodeSource().getLocation().toURI());
            // kiln-cli/target/kiln-cli-….jar (or kiln-cli/target/classes) → the repository → kiln-bench
            return code.getParent().getParent().getParent().resolve("kiln-bench");
        } catch (Exception e) {
            throw new IllegalStateException("cannot tell where kiln-bench is; set KILN_BENCH_HOME", e);
        }
    }
}

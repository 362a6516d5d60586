package dev.kiln.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.ExecResult;
import dev.kiln.GuestImage;
import dev.kiln.image.DefaultImage;
import dev.kiln.qemu.Accelerator;
import dev.kiln.qemu.QemuMachine;
import dev.kiln.support.HostCpu;
import dev.kiln.support.WorkDir;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.function.LongSupplier;

/**
 * {@code kiln bench}: Kiln against its peers, in one run, interleaved run by run, on the same QEMU and guest:
 * <ul>
 *   <li>launch → QMP ready → quit of a paused VM with no guest: Kiln (warm JVM) vs QEMU's own
 *       {@code qemu.machine.QEMUMachine} and vs a bare blocking Python client;</li>
 *   <li>QMP {@code query-status} round trip: Kiln vs {@code qemu.qmp}'s QMPClient, QEMUMachine.qmp() and the
 *       bare client;</li>
 *   <li>cold boot of the default image: Kiln to guest-agent ready vs raw {@code qemu-system-x86_64} started
 *       by a shell to the ready marker vs QEMUMachine to the marker, with boot-phase timelines (PNG), the
 *       VMM's peak RSS and the teardown;</li>
 *   <li>exec of {@code true} vs a fork+exec inside the guest by its own clock;</li>
 *   <li>the JVM's heap and platform threads per machine;</li>
 *   <li>the Debian image: build, size, boot, dd through virtio-blk ({@link DebianBenchmark});</li>
 *   <li>snapshots: restore vs cold boot of the default image ({@link SnapshotBenchmark});</li>
 *   <li>a cloud image (cloud-init, sshd, agent): SSH vs agent exec and copies, shares, SeaBIOS vs direct kernel boot
 *       ({@link CloudBenchmark}).</li>
 * </ul>
 * Writes results.json, results.md and boot-timeline.png into the results folder and prints the table.
 *
 * <p>Usage: {@code PeerBenchmark [--runs N] [--qmp N] [--machines N] [--booted N] [--out DIR]
 * [--peers DIR] [--no-python] [--only launch,qmp,boot,memory,debian,snapshot,cloud]}
 */
public final class PeerBenchmark {
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    private static final Duration LONG = Duration.ofSeconds(180);

    private final Options opt;
    private final Map<String, Samples> samples = new LinkedHashMap<>();
    private final List<String[]> comparisons = new ArrayList<>(); // {group, kiln key, peer key, peer label}
    private final ObjectNode info = JsonNodeFactory.instance.objectNode();
    private final ObjectNode jvmCost = JsonNodeFactory.instance.objectNode();
    private final List<String> notes = new ArrayList<>();
    private GuestImage image;
    private Accelerator.Choice accel;
    private PythonPeer python;
    private Path scratch;
    private List<String> pausedPeerArgs = List.of();
    private String binary = "qemu-system-x86_64";

    private final String command;

    private PeerBenchmark(Options opt, String command) {
        this.opt = opt;
        this.command = command;
    }

    public static void main(String[] args) throws Exception {
        Options opt;
        try {
            opt = Options.parse(args);
        } catch (IllegalArgumentException e) {
            System.err.println("kiln bench: " + e.getMessage());
            System.err.println(Options.USAGE);
            System.exit(2);
            return;
        }
        if (opt.help) {
            System.out.println(Options.USAGE);
            return;
        }
        new PeerBenchmark(opt, ("kiln bench " + String.join(" ", args)).strip()).run();
        System.exit(0); // the peer's reader and Kiln's daemon threads are done with; do not wait for pollers
    }

    // ---- the run ---------------------------------------------------------------------------------

    private void run() throws Exception {
        Files.createDirectories(opt.out);
        scratch = WorkDir.create(Path.of(System.getProperty("java.io.tmpdir")), "kiln-bench-");
        try {
            image = DefaultImage.get(System.err::println);
            accel = Accelerator.fromEnvironment().resolve();
            describeHost();
            System.out.printf("kiln bench: %s; %s; %d runs each, interleaved; results in %s%n",
                    info.get("host").asText(), accel, opt.runs, opt.out);
            startPython();
            try {
                if (opt.runs("launch")) launchQuit();
                if (opt.runs("qmp")) qmpRoundTrips();
                if (opt.runs("boot")) boots();
                if (opt.runs("memory")) perMachineCost();
                if (opt.runs("debian")) new DebianBenchmark(this, image, binary, opt.runs, scratch).run();
                if (opt.runs("snapshot")) new SnapshotBenchmark(this, image, opt.runs, scratch).run();
                if (opt.runs("cloud")) new CloudBenchmark(this, opt.runs, scratch).run();
            } finally {
                if (python != null) python.close();
            }
            info.put("loadavg_end", loadavg());
            writeResults();
        } finally {
            WorkDir.delete(scratch);
        }
    }

    private void describeHost() throws IOException, InterruptedException {
        String kernel = Files.readString(Path.of("/proc/sys/kernel/osrelease")).strip();
        String cpu = "?";
        for (String line : Files.readAllLines(Path.of("/proc/cpuinfo"))) {
            if (line.startsWith("model name")) {
                cpu = line.substring(line.indexOf(':') + 1).strip();
                break;
            }
        }
        long memKib = 0;
        for (String line : Files.readAllLines(Path.of("/proc/meminfo"))) {
            if (line.startsWith("MemTotal:")) memKib = Long.parseLong(line.split("\\s+")[1]);
        }
        int cores = Runtime.getRuntime().availableProcessors();
        info.put("host", String.format(Locale.ROOT, "%d cores (%s), %d GiB, kernel %s", cores, cpu,
                Math.round(memKib / 1048576.0), kernel));
        info.put("cores", cores).put("kernel", kernel).put("cpu", cpu);
        info.put("accelerator", accel.toString());
        info.put("qemu", firstLine(List.of(binary, "--version")));
        info.put("java", System.getProperty("java.vm.name") + " " + Runtime.version());
        info.put("python", firstLine(List.of("python3", "--version")));
        info.put("image", image.description());
        info.put("date", LocalDateTime.now().withNano(0).toString());
        info.put("command", command);
        info.put("loadavg_start", loadavg());
        ObjectNode o = info.putObject("options");
        o.put("runs", opt.runs).put("qmp", opt.qmpCalls).put("machines", opt.machines).put("booted", opt.booted);
    }

    private static String firstLine(List<String> cmd) {
        try {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            p.waitFor(10, TimeUnit.SECONDS);
            return out.lines().findFirst().orElse("?").strip();
        } catch (IOException e) {
            return "not found (" + e.getMessage() + ")";
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return "?";
        }
    }

    private static String loadavg() {
        try {
            String[] f = Files.readString(Path.of("/proc/loadavg")).split("\\s+");
            return f[0] + " " + f[1] + " " + f[2];
        } catch (IOException e) {
            return "?";
        }
    }

    // ---- the Python peer -------------------------------------------------------------------------

    private void startPython() throws IOException, InterruptedException {
        // Kiln's own paused command line, less its monitor and what QEMUMachine adds itself: the peers run
        // the very same QEMU configuration.
        try (QemuMachine vm = pausedMachine().start()) {
            binary = vm.commandLine().getFirst();
            pausedPeerArgs = peerArgs(vm.commandLine());
            info.putPOJO("kiln_paused_command", vm.commandLine());
        }
        if (!opt.python) {
            notes.add("Python peers skipped (--no-python).");
            return;
        }
        if (!info.get("python").asText().startsWith("Python 3")) {
            skipPython("no python3 on this host");
            return;
        }
        Path script = opt.peers.resolve("qemu_machine_peer.py");
        Path fetch = opt.peers.resolve("fetch-qemu-python.sh");
        if (!Files.isRegularFile(script) || !Files.isRegularFile(fetch)) {
            skipPython("the peer scripts are not in " + opt.peers + " (give --peers DIR)");
            return;
        }
        System.err.println("kiln bench: fetching QEMU's Python harness (cached after the first run)…");
        Process p = new ProcessBuilder("bash", fetch.toString())
                .redirectError(ProcessBuilder.Redirect.INHERIT).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
        if (!p.waitFor(15, TimeUnit.MINUTES)) {
            p.destroyForcibly();
            skipPython("fetch-qemu-python.sh did not finish within 15 minutes");
            return;
        }
        if (p.exitValue() != 0 || out.isEmpty()) {
            skipPython("fetch-qemu-python.sh failed (exit " + p.exitValue() + ")");
            return;
        }
        Path qemuPython = Path.of(out.lines().reduce((a, b) -> b).orElseThrow());
        info.put("qemu_python", qemuPython.toString());
        ObjectNode config = JsonNodeFactory.instance.objectNode();
        config.put("binary", binary).put("marker", image.readyMarker());
        pausedPeerArgs.forEach(config.putArray("paused_args")::add);
        bootArgs(scratch.resolve("py-qga.sock")).forEach(config.putArray("boot_args")::add);
        python = new PythonPeer(script, qemuPython, config, opt.out.resolve("python-peer.log"));
    }

    private void skipPython(String why) {
        System.err.println("kiln bench: Python peers skipped: " + why);
        notes.add("Python peers skipped: " + why + ".");
    }

    private JsonNode py(String op) throws IOException, InterruptedException {
        ObjectNode req = JsonNodeFactory.instance.objectNode().put("op", op);
        return python.request(req, LONG);
    }

    /** Kiln's command line less the binary, its QMP monitor and -display/-vga (QEMUMachine adds those). */
    static List<String> peerArgs(List<String> kiln) {
        List<String> out = new ArrayList<>();
        for (int i = 1; i < kiln.size(); i++) {
            String a = kiln.get(i);
            String next = i + 1 < kiln.size() ? kiln.get(i + 1) : "";
            boolean monitor = (a.equals("-chardev") && next.contains("id=mon,")) || (a.equals("-mon") && next.startsWith("chardev=mon,"));
            boolean display = (a.equals("-display") || a.equals("-vga")) && next.equals("none");
            if (monitor || display) {
                i++;
                continue;
            }
            out.add(a);
        }
        return out;
    }

    private static QemuMachine.Builder pausedMachine() {
        return QemuMachine.builder().noGuest().paused(true).machine("none").memoryMib(16).console(false).agent(false);
    }

    // ---- launch → QMP ready → quit -----------------------------------------------------------------

    private void launchQuit() throws Exception {
        System.err.println("kiln bench: launch → QMP ready → quit, paused, no guest");
        Samples kiln = sample("launch.kiln", "Kiln (warm JVM): QemuMachine.start() → shutdown()");
        Samples kilnReady = sample("launch.kiln.qmp_ready", "Kiln: launch → QMP ready");
        Samples kilnSpawn = sample("launch.kiln.spawn", "Kiln: work dir, sockets, spawn of QEMU (its wrapper)");
        Samples kilnQuit = sample("launch.kiln.quit", "Kiln: shutdown() of the paused VM");
        Samples qm = sample("launch.qemumachine", "QEMUMachine: launch() → shutdown()");
        Samples qmReady = sample("launch.qemumachine.qmp_ready", "QEMUMachine: launch → QMP ready");
        Samples bare = sample("launch.bare", "bare Python client: spawn, greeting, capabilities, quit, wait");
        for (int i = 0; i < 10; i++) kilnLaunchQuit(null, null, null, null); // warm the JVM
        if (python != null) {
            py("launch-quit");
            py("bare-launch-quit");
        }
        for (int i = 0; i < opt.runs * 2; i++) {
            kilnLaunchQuit(kiln, kilnReady, kilnSpawn, kilnQuit);
            if (python != null) {
                JsonNode r = py("launch-quit");
                qm.add(r.get("ms").asDouble());
                qmReady.add(r.get("qmp_ready_ms").asDouble());
                r = py("bare-launch-quit");
                bare.add(r.get("ms").asDouble());
                sample("launch.bare.qmp_ready", "bare Python client: launch → QMP ready").add(r.get("qmp_ready_ms").asDouble());
            }
        }
        compare("launch → QMP ready → quit (paused, no guest)", "launch.kiln", "launch.qemumachine", "QEMUMachine");
        compare("launch → QMP ready → quit (paused, no guest)", "launch.kiln", "launch.bare", "bare Python client");
        compare("launch → QMP ready (paused, no guest)", "launch.kiln.qmp_ready", "launch.qemumachine.qmp_ready", "QEMUMachine");
        compare("launch → QMP ready (paused, no guest)", "launch.kiln.qmp_ready", "launch.bare.qmp_ready", "bare Python client");
    }

    private void kilnLaunchQuit(Samples total, Samples ready, Samples spawn, Samples quit) {
        long t0 = System.nanoTime();
        QemuMachine vm = pausedMachine().start();
        long started = System.nanoTime();
        vm.shutdown(Duration.ofSeconds(30));
        long t1 = System.nanoTime();
        if (total != null) {
            total.addNanos(t1 - t0);
            ready.addNanos(vm.startTimings().vmmUpAfter().orElseThrow().toNanos());
            spawn.addNanos(vm.startTimings().spawnedAfter().orElseThrow().toNanos());
            quit.addNanos(t1 - started);
        }
    }

    // ---- QMP round trips ---------------------------------------------------------------------------

    private void qmpRoundTrips() throws Exception {
        System.err.println("kiln bench: QMP query-status round trips, paused VM");
        int rounds = 8, per = Math.max(1, opt.qmpCalls / rounds), warm = Math.min(200, per);
        // a warm JVM: the reply path compiled (C2) before anything counts
        try (QemuMachine vm = pausedMachine().start()) {
            for (int i = 0; i < 10_000; i++) vm.command("query-status");
        }
        Samples kiln = sample("qmp.kiln", "Kiln: QemuMachine.command(\"query-status\")");
        Samples async = sample("qmp.qemu.qmp", "qemu.qmp QMPClient.execute() (asyncio)");
        Samples machine = sample("qmp.qemumachine", "QEMUMachine.qmp() (qemu.qmp's sync wrapper)");
        Samples bare = sample("qmp.bare", "bare blocking Python client");
        for (int round = 0; round < rounds; round++) {
            try (QemuMachine vm = pausedMachine().start()) {
                for (int i = 0; i < warm; i++) vm.command("query-status");
                for (int i = 0; i < per; i++) {
                    long t = System.nanoTime();
                    vm.command("query-status");
                    kiln.addNanos(System.nanoTime() - t);
                }
            }
            if (python != null) {
                for (var e : Map.of("async", async, "machine", machine, "bare", bare).entrySet()) {
                    ObjectNode req = JsonNodeFactory.instance.objectNode().put("op", "qmp").put("client", e.getKey())
                            .put("n", per).put("warmup", warm);
                    for (JsonNode v : python.request(req, LONG).get("times_ms")) e.getValue().add(v.asDouble());
                }
            }
        }
        compare("QMP query-status round trip", "qmp.kiln", "qmp.qemu.qmp", "qemu.qmp QMPClient");
        compare("QMP query-status round trip", "qmp.kiln", "qmp.qemumachine", "QEMUMachine.qmp()");
        compare("QMP query-status round trip", "qmp.kiln", "qmp.bare", "bare blocking Python client");
    }

    // ---- boots -------------------------------------------------------------------------------------

    /** The default image's boot for the raw and QEMUMachine peers: Kiln's devices, console added by each. */
    private List<String> bootArgs(Path qgaSocket) {
        long khz = HostCpu.tscKhz();
        String cmdline = "console=ttyS0 " + (khz > 0 ? "tsc_early_khz=" + khz + " " : "") + image.cmdline();
        return List.of("-M", "microvm,rtc=on,isa-serial=on", "-accel", accel.accelerator().qemuName(),
                "-m", "256", "-smp", "1", "-nodefaults", "-no-user-config", "-no-reboot",
                "-device", "virtio-serial-device",
                "-chardev", "socket,id=qga,server=on,wait=off,path=" + qgaSocket,
                "-device", "virtserialport,chardev=qga,name=" + QemuMachine.AGENT_PORT_NAME,
                "-kernel", image.kernel().toString(), "-initrd", image.initrd().toString(), "-append", cmdline.strip());
    }

    private static final String KERNEL_FIRST = "Linux version", KERNEL_INIT = "Run /init";

    private void boots() throws Exception {
        System.err.println("kiln bench: cold boots of the default image (" + opt.runs + " of each, interleaved)");
        rawBoot(null);
        kilnBoot(null, false);
        if (python != null) py("boot");
        for (int i = 0; i < opt.runs; i++) {
            rawBoot(i);
            kilnBoot(i, true);
            if (python != null) {
                JsonNode r = py("boot");
                sample("boot.qemumachine.qmp_ready", "QEMUMachine: launch → QMP ready").add(r.get("qmp_ready_ms").asDouble());
                for (String k : List.of("linux", "init")) {
                    if (r.hasNonNull(k + "_ms")) sample("boot.qemumachine." + k, "QEMUMachine: '" + k + "'").add(r.get(k + "_ms").asDouble());
                }
                sample("boot.qemumachine", "QEMUMachine: launch → ready marker on its console socket").add(r.get("ready_ms").asDouble());
                sample("teardown.qemumachine", "QEMUMachine.shutdown() (quit, wait)").add(r.get("teardown_ms").asDouble());
                if (r.hasNonNull("vmm_hwm_kib")) sample("rss.qemumachine", "QEMU under QEMUMachine: peak RSS (VmHWM)", "MiB").add(r.get("vmm_hwm_kib").asDouble() / 1024);
            }
            System.err.printf(Locale.ROOT, "kiln bench: boot run %d/%d: raw %.0f ms, Kiln %.0f ms (load %s)%n", i + 1, opt.runs,
                    lastOf("boot.raw"), lastOf("boot.kiln"), loadavg());
        }
        String g = "cold boot";
        compare(g + ": Kiln to agent ready vs raw QEMU to the ready marker", "boot.kiln", "boot.raw", "raw qemu-system-x86_64");
        compare(g + ": Kiln to the ready marker vs raw QEMU to the ready marker", "boot.kiln.marker", "boot.raw", "raw qemu-system-x86_64");
        compare(g + ": Kiln to agent ready vs QEMUMachine to the ready marker", "boot.kiln", "boot.qemumachine", "QEMUMachine");
        compare("teardown of a booted guest", "teardown.kiln", "teardown.qemumachine", "QEMUMachine.shutdown()");
        compare("teardown of a booted guest", "teardown.kiln", "teardown.raw", "raw: SIGTERM, wait");
        compare("VMM peak RSS (VmHWM), booted guest", "rss.kiln", "rss.raw", "raw qemu-system-x86_64");
        compare("exec of `true` in a booted guest", "exec.kiln", "exec.guest", "fork+exec inside the guest");
        plot();
    }

    double lastOf(String key) {
        Samples s = samples.get(key);
        return s == null || s.isEmpty() ? Double.NaN : s.last();
    }

    private void rawBoot(Integer run) throws Exception {
        Path dir = WorkDir.create(scratch, "raw-");
        try {
            List<String> cmd = new ArrayList<>(List.of(binary, "-display", "none", "-vga", "none", "-serial", "stdio"));
            cmd.addAll(bootArgs(dir.resolve("qga.sock")));
            String sh = "exec " + String.join(" ", cmd.stream().map(PeerBenchmark::shellQuote).toList());
            long t0 = System.nanoTime();
            Process p = new ProcessBuilder("/bin/sh", "-c", sh).redirectErrorStream(true).start();
            long spawned = System.nanoTime() - t0, linux = -1, init = -1, ready = -1;
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) {
                    long t = System.nanoTime() - t0;
                    if (linux < 0 && line.contains(KERNEL_FIRST)) linux = t;
                    if (init < 0 && line.contains(KERNEL_INIT)) init = t;
                    if (line.contains(image.readyMarker())) {
                        ready = t;
                        break;
                    }
                }
                if (ready < 0) throw new IllegalStateException("raw QEMU exited before the ready marker (exit " + p.waitFor() + ")");
                long hwm = vmHwmKib(p.pid());
                long t1 = System.nanoTime();
                p.destroy(); // SIGTERM: QEMU exits cleanly
                if (!p.waitFor(30, TimeUnit.SECONDS)) throw new IllegalStateException("raw QEMU ignored SIGTERM for 30 s");
                long teardown = System.nanoTime() - t1;
                if (run == null) info.put("raw_boot_command", sh);
                if (run != null) {
                    sample("boot.raw.spawned", "raw: shell + QEMU spawned").addNanos(spawned);
                    if (linux > 0) sample("boot.raw.linux", "raw: '" + KERNEL_FIRST + "'").addNanos(linux);
                    if (init > 0) sample("boot.raw.init", "raw: '" + KERNEL_INIT + "'").addNanos(init);
                    sample("boot.raw", "raw qemu-system-x86_64 by a shell, console on stdio: spawn → ready marker").addNanos(ready);
                    sample("teardown.raw", "raw: SIGTERM → exit").addNanos(teardown);
                    if (hwm > 0) sample("rss.raw", "raw QEMU: peak RSS (VmHWM)", "MiB").add(hwm / 1024.0);
                }
            } finally {
                p.destroyForcibly().waitFor();
            }
        } finally {
            WorkDir.delete(dir);
        }
    }

    private void kilnBoot(Integer run, boolean measureExec) {
        QemuMachine vm = QemuMachine.builder().image(image).build();
        long[] at = {-1, -1, -1};
        LongSupplier now = System::nanoTime;
        vm.console().watch(KERNEL_FIRST, () -> at[0] = now.getAsLong());
        vm.console().watch(KERNEL_INIT, () -> at[1] = now.getAsLong());
        vm.console().watch(image.readyMarker(), () -> at[2] = now.getAsLong());
        long t0 = System.nanoTime();
        try (vm) {
            vm.start(); // returns once the ready marker was seen and the agent answered
            long ready = System.nanoTime() - t0;
            if (run == null) info.putPOJO("kiln_boot_command", vm.commandLine());
            long hwm = vmHwmKib(vm.pid().orElseThrow());
            if (run != null) {
                sample("boot.kiln.spawned", "Kiln: QEMU spawned").addNanos(vm.startTimings().spawnedAfter().orElseThrow().toNanos());
                sample("boot.kiln.qmp_ready", "Kiln: VMM up (QMP, console, agent channel connected)").addNanos(vm.startTimings().vmmUpAfter().orElseThrow().toNanos());
                if (at[0] > 0) sample("boot.kiln.linux", "Kiln: '" + KERNEL_FIRST + "'").addNanos(at[0] - t0);
                if (at[1] > 0) sample("boot.kiln.init", "Kiln: '" + KERNEL_INIT + "'").addNanos(at[1] - t0);
                if (at[2] > 0) sample("boot.kiln.marker", "Kiln: ready marker on the console").addNanos(at[2] - t0);
                if (at[2] > 0) sample("boot.kiln.marker_to_agent", "Kiln: ready marker → agent answers, start() returns (per boot)").addNanos(ready - (at[2] - t0));
                sample("boot.kiln", "Kiln (warm JVM): QemuMachine.start() → guest agent answers guest-sync").addNanos(ready);
                if (hwm > 0) sample("rss.kiln", "QEMU under Kiln: peak RSS (VmHWM)", "MiB").add(hwm / 1024.0);
            }
            if (measureExec) {
                Samples exec = sample("exec.kiln", "Kiln: guest().exec(\"true\") through qemu-guest-agent");
                vm.guest().exec("true");
                for (int i = 0; i < 20; i++) {
                    long t = System.nanoTime();
                    ExecResult r = vm.guest().exec("true");
                    exec.addNanos(System.nanoTime() - t);
                    if (r.exitCode() != 0) throw new IllegalStateException("true exited " + r.exitCode());
                }
                // the guest's own cost of one fork+exec of /bin/true, by its clock
                ExecResult r = vm.guest().exec("sh", "-c",
                        "s=$(cat /proc/uptime); i=0; while [ $i -lt 100 ]; do /bin/true; i=$((i+1)); done; e=$(cat /proc/uptime); echo $s $e");
                String[] f = r.stdoutText().trim().split("\\s+");
                sample("exec.guest", "fork+exec of /bin/true inside the guest (its clock)")
                        .add((Double.parseDouble(f[2]) - Double.parseDouble(f[0])) * 1000 / 100);
            }
            long t1 = System.nanoTime();
            vm.shutdown(Duration.ofSeconds(30));
            if (run != null) sample("teardown.kiln", "Kiln: shutdown() (quit, wait, cleanup)").addNanos(System.nanoTime() - t1);
        }
    }

    static long vmHwmKib(long pid) {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/" + pid + "/status"))) {
                if (line.startsWith("VmHWM:")) return Long.parseLong(line.split("\\s+")[1]);
            }
        } catch (IOException | NumberFormatException e) {
            return -1;
        }
        return -1;
    }

    static String shellQuote(String s) {
        if (s.matches("[A-Za-z0-9_./=,:@%+-]+")) return s;
        return "'" + s.replace("'", "'\\''") + "'";
    }

    private void plot() throws IOException {
        List<TimelinePlot.Row> rows = new ArrayList<>();
        rows.add(row("raw qemu-system-x86_64 (shell, console on stdio)", "boot.raw", List.of(
                new String[] {"boot.raw.spawned", "spawn"},
                new String[] {"boot.raw.linux", "firmware, kernel load → 'Linux version'"},
                new String[] {"boot.raw.init", "kernel → 'Run /init'"},
                new String[] {"boot.raw", "init → ready marker"})));
        rows.add(row("Kiln, to the ready marker and to the agent", "boot.kiln", List.of(
                new String[] {"boot.kiln.spawned", "spawn"},
                new String[] {"boot.kiln.qmp_ready", "QMP ready"},
                new String[] {"boot.kiln.started", "console and agent channel connected"},
                new String[] {"boot.kiln.linux", "firmware, kernel load → 'Linux version'"},
                new String[] {"boot.kiln.init", "kernel → 'Run /init'"},
                new String[] {"boot.kiln.marker", "init → ready marker"},
                new String[] {"boot.kiln", "marker → agent answers guest-sync"})));
        if (has("boot.qemumachine")) {
            rows.add(row("QEMUMachine (qemu.machine), to the ready marker", "boot.qemumachine", List.of(
                    new String[] {"boot.qemumachine.qmp_ready", "QMP ready"},
                    new String[] {"boot.qemumachine.linux", "firmware, kernel load → 'Linux version'"},
                    new String[] {"boot.qemumachine.init", "kernel → 'Run /init'"},
                    new String[] {"boot.qemumachine", "init → ready marker"})));
        }
        TimelinePlot.write(opt.out.resolve("boot-timeline.png"),
                "Cold boot of Kiln's default image: phases (medians of " + opt.runs + " interleaved runs)",
                info.get("accelerator").asText() + " · " + info.get("host").asText() + " · load " + info.get("loadavg_start").asText(),
                rows);
    }

    private TimelinePlot.Row row(String label, String total, List<String[]> phases) {
        List<TimelinePlot.Phase> ps = new ArrayList<>();
        for (String[] p : phases) if (has(p[0])) ps.add(new TimelinePlot.Phase(p[1], samples.get(p[0]).median()));
        Samples t = samples.get(total);
        return new TimelinePlot.Row(label, ps, t.min(), t.max());
    }

    // ---- the JVM's cost per machine ----------------------------------------------------------------

    private void perMachineCost() throws Exception {
        System.err.println("kiln bench: the JVM's heap and platform threads per machine");
        jvmCost.set("paused", machinesCost(opt.machines, false));
        if (opt.booted > 0) jvmCost.set("booted", machinesCost(opt.booted, true));
    }

    private ObjectNode machinesCost(int count, boolean boot) throws Exception {
        // one machine first, so that JVM-wide threads (carriers, pollers, process reaper) already exist
        try (QemuMachine warm = perMachine(image, boot).start()) {
        }
        JvmState before = JvmState.now();
        List<QemuMachine> vms = new ArrayList<>();
        ObjectNode o = JsonNodeFactory.instance.objectNode();
        try {
            for (int i = 0; i < count; i++) vms.add(perMachine(image, boot).readyTimeout(Duration.ofSeconds(300)).start());
            JvmState with = JvmState.now();
            o.put("machines", count).put("what", boot ? "booted default image, agent ready" : "default image, paused before boot (QMP, console, agent channel)");
            o.put("heap_after_gc_bytes_per_machine", (with.heap - before.heap) / (double) count);
            o.put("platform_threads_per_machine", (with.platformThreads - before.platformThreads) / (double) count);
            o.put("jvm_rss_kib_per_machine", (with.rssKib - before.rssKib) / (double) count);
            o.put("heap_before", before.heap).put("heap_with", with.heap);
            o.put("platform_threads_before", before.platformThreads).put("platform_threads_with", with.platformThreads);
            ObjectNode names = o.putObject("new_platform_threads");
            Map<String, Integer> diff = new TreeMap<>(with.threadNames);
            before.threadNames.forEach((k, v) -> diff.merge(k, -v, Integer::sum));
            diff.forEach((k, v) -> { if (v != 0) names.put(k, v); });
        } finally {
            for (QemuMachine vm : vms) vm.kill();
        }
        JvmState after = JvmState.now();
        o.put("platform_threads_after_close", after.platformThreads).put("heap_after_close", after.heap);
        System.err.printf(Locale.ROOT, "kiln bench: %d %s machines: %.0f KiB heap, %.2f platform threads each%n", count,
                boot ? "booted" : "paused", o.get("heap_after_gc_bytes_per_machine").asDouble() / 1024,
                o.get("platform_threads_per_machine").asDouble());
        return o;
    }

    /** Heap after GC, platform threads (by name, digits dropped) and the process's RSS. */
    private record JvmState(long heap, int platformThreads, long rssKib, Map<String, Integer> threadNames) {
        static JvmState now() throws InterruptedException {
            for (int i = 0; i < 3; i++) {
                System.gc();
                Thread.sleep(100);
            }
            long heap = ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed();
            // Platform threads (getAllStackTraces leaves virtual ones out), less the JDK's idle process
            // reapers: pooled, they linger after their process and would be counted against a later machine
            // that reuses them. A busy one is named "process reaper (pid N)" and counts.
            int threads = 0;
            Map<String, Integer> names = new TreeMap<>();
            for (Thread t : Thread.getAllStackTraces().keySet()) {
                if (t.getName().equals("process reaper")) continue;
                threads++;
                names.merge(t.getName().replaceAll("\\d+", "N"), 1, Integer::sum);
            }
            long rss = -1;
            try {
                for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                    if (line.startsWith("VmRSS:")) rss = Long.parseLong(line.split("\\s+")[1]);
                }
            } catch (IOException ignored) {
                // left at -1
            }
            return new JvmState(heap, threads, rss, names);
        }
    }

    // ---- results -----------------------------------------------------------------------------------

    Samples sample(String key, String label) {
        return sample(key, label, "ms");
    }

    Samples sample(String key, String label, String unit) {
        return samples.computeIfAbsent(key, k -> new Samples(label, unit));
    }

    private boolean has(String key) {
        Samples s = samples.get(key);
        return s != null && !s.isEmpty();
    }

    void compare(String group, String kilnKey, String peerKey, String peerLabel) {
        comparisons.add(new String[] {group, kilnKey, peerKey, peerLabel});
    }

    ObjectNode info() {
        return info;
    }

    void note(String line) {
        notes.add(line);
    }

    private void writeResults() throws IOException {
        StringBuilder md = new StringBuilder();
        md.append("Host: ").append(info.get("host").asText()).append("; ").append(info.get("qemu").asText())
                .append("; ").append(info.get("java").asText()).append("; ").append(info.get("python").asText()).append('\n');
        md.append("Command: `").append(command).append("` (or `kiln-bench/run` with the same options).\n");
        md.append("Accelerator: ").append(info.get("accelerator").asText()).append(". Guest: ").append(info.get("image").asText()).append('\n');
        md.append("Load average (1, 5, 15 min): ").append(info.get("loadavg_start").asText()).append(" at the start, ")
                .append(info.get("loadavg_end").asText()).append(" at the end. ").append(info.get("date").asText()).append("\n\n");
        md.append("| scenario | Kiln: median (spread) | peer | peer: median (spread) | ratio Kiln / peer |\n");
        md.append("|---|---:|---|---:|---:|\n");
        ArrayNode ratios = JsonNodeFactory.instance.arrayNode();
        for (String[] c : comparisons) {
            if (!has(c[1]) || !has(c[2])) continue;
            Samples k = samples.get(c[1]), p = samples.get(c[2]);
            double ratio = k.median() / p.median();
            md.append(String.format(Locale.ROOT, "| %s | %s, n=%d | %s | %s, n=%d | **%.2f** |%n", c[0], k.summary(), k.n(),
                    c[3], p.summary(), p.n(), ratio));
            ratios.addObject().put("scenario", c[0]).put("kiln", c[1]).put("peer", c[2]).put("peer_label", c[3])
                    .put("kiln_median", k.median()).put("peer_median", p.median()).put("ratio", ratio);
        }
        md.append("\nSpread: p10–p90 for 10 samples or more, min–max below that.\n");
        md.append("\n<details><summary>Every series (phases, breakdowns)</summary>\n\n| series | median (spread) | n |\n|---|---:|---:|\n");
        samples.forEach((k, v) -> {
            if (!v.isEmpty()) md.append(String.format(Locale.ROOT, "| %s (`%s`) | %s | %d |%n", v.name, k, v.summary(), v.n()));
        });
        md.append("\n</details>\n");
        if (!jvmCost.isEmpty()) {
            md.append("\n| JVM cost per machine | heap after GC | platform threads | JVM RSS |\n|---|---:|---:|---:|\n");
            jvmCost.properties().forEach(e -> {
                JsonNode o = e.getValue();
                md.append(String.format(Locale.ROOT, "| %d machines: %s | %.0f KiB | %.2f | %.0f KiB |%n",
                        o.get("machines").asInt(), o.get("what").asText(),
                        o.get("heap_after_gc_bytes_per_machine").asDouble() / 1024, o.get("platform_threads_per_machine").asDouble(),
                        o.get("jvm_rss_kib_per_machine").asDouble()));
            });
        }
        List<String> targets = targets();
        if (!targets.isEmpty()) {
            md.append("\nTargets:\n");
            targets.forEach(t -> md.append("- ").append(t).append('\n'));
        }
        if (!notes.isEmpty()) {
            md.append('\n');
            notes.forEach(n -> md.append(n).append('\n'));
        }
        md.append("\nAll samples: results.json.").append(opt.runs("boot") ? " Boot phases: boot-timeline.png." : "").append('\n');

        ObjectNode root = JsonNodeFactory.instance.objectNode();
        root.set("info", info);
        root.set("ratios", ratios);
        ObjectNode all = root.putObject("samples");
        samples.forEach((k, v) -> all.set(k, v.toJson()));
        root.set("jvm_per_machine", jvmCost);
        targets.forEach(root.putArray("targets")::add);
        JSON.writeValue(opt.out.resolve("results.json").toFile(), root);
        Files.writeString(opt.out.resolve("results.md"), md);
        System.out.println();
        System.out.print(md);
        System.out.println("Written: " + opt.out.resolve("results.md") + ", results.json"
                + (Files.exists(opt.out.resolve("boot-timeline.png")) ? ", boot-timeline.png" : ""));
    }

    /** The targets, each said to hold or not with the figures. */
    private List<String> targets() {
        List<String> out = new ArrayList<>();
        target(out, "QMP round trip ≤ 0.5× qemu.qmp's", "qmp.kiln", "qmp.qemu.qmp", 0.5);
        target(out, "launch → QMP ready → quit ≤ 0.8× QEMUMachine's (warm JVM)", "launch.kiln", "launch.qemumachine", 0.8);
        target(out, "cold boot to agent ready ≤ 1.1× raw QEMU's boot to the ready marker", "boot.kiln", "boot.raw", 1.1);
        target(out, "Debian boot to the ready marker ≤ 1.05× raw QEMU's on the same disk and kernel", "debian.boot.kiln.marker", "debian.boot.raw", 1.05);
        targetAtLeast(out, "Debian dd write through virtio-blk ≥ 0.95× raw QEMU's", "debian.dd.write.kiln", "debian.dd.write.raw", 0.95);
        targetAtLeast(out, "Debian dd read through virtio-blk ≥ 0.95× raw QEMU's", "debian.dd.read.kiln", "debian.dd.read.raw", 0.95);
        target(out, "restore → agent ready ≥ 10× faster than a cold boot (default image)", "snapshot.restore.agent", "snapshot.boot", 0.1);
        target(out, "template clone → agent ready ≥ 10× faster than a cold boot (default image)", "snapshot.clone.agent", "snapshot.boot", 0.1);
        target(out, "memory of " + SnapshotBenchmark.CLONES + " running clones ≤ 1.5× one guest's (PSS)", "snapshot.clones.pss", "snapshot.one.pss", 1.5);
        JsonNode paused = jvmCost.get("paused");
        if (paused != null) {
            double heap = paused.get("heap_after_gc_bytes_per_machine").asDouble() / (1024 * 1024);
            double threads = paused.get("platform_threads_per_machine").asDouble();
            out.add(String.format(Locale.ROOT, "JVM heap per machine ≤ 2 MiB: %.2f MiB → %s", heap, heap <= 2 ? "holds" : "does NOT hold"));
            out.add(String.format(Locale.ROOT, "≤ 2 platform threads per machine: %.2f → %s", threads, threads <= 2 ? "holds" : "does NOT hold"));
        }
        JsonNode booted = jvmCost.get("booted");
        if (booted != null) {
            double heap = booted.get("heap_after_gc_bytes_per_machine").asDouble() / (1024 * 1024);
            double threads = booted.get("platform_threads_per_machine").asDouble();
            out.add(String.format(Locale.ROOT, "the same with booted guests: %.2f MiB heap, %.2f platform threads per machine → %s",
                    heap, threads, heap <= 2 && threads <= 2 ? "holds" : "does NOT hold"));
        }
        return out;
    }

    private void target(List<String> out, String what, String kiln, String peer, double limit) {
        if (!has(kiln) || !has(peer)) return;
        double r = samples.get(kiln).median() / samples.get(peer).median();
        out.add(String.format(Locale.ROOT, "%s: %.2f → %s", what, r, r <= limit ? "holds" : "does NOT hold"));
    }

    private void targetAtLeast(List<String> out, String what, String kiln, String peer, double floor) {
        if (!has(kiln) || !has(peer)) return;
        double r = samples.get(kiln).median() / samples.get(peer).median();
        out.add(String.format(Locale.ROOT, "%s: %.2f → %s", what, r, r >= floor ? "holds" : "does NOT hold"));
    }

    // ---- options -----------------------------------------------------------------------------------

    static final class Options {
        static final String USAGE = """
                Usage: kiln bench [--runs N] [--qmp N] [--machines N] [--booted N] [--out DIR] [--peers DIR]
                                  [--no-python] [--only launch,qmp,boot,memory,debian,snapshot,cloud]
                  --runs N      boots of each kind, and twice as many launch/quit cycles (default 10);
                                Debian: as many cached builds and boots, at most 3 cold builds;
                                cloud: as many rounds of exec and copies, and boots of each kind
                  --qmp N       QMP round trips per client (default 2000)
                  --machines N  paused machines started at once for the JVM's cost per machine (default 8)
                  --booted N    booted machines for the same (default 4; 0: skip)
                  --out DIR     results folder (default kiln-bench/target/results/<date-time>)
                  --peers DIR   where qemu_machine_peer.py and fetch-qemu-python.sh are (default kiln-bench/peers)
                  --no-python   skip QEMU's Python harness (raw QEMU stays)
                  --only LIST   only these parts""";

        int runs = 10, qmpCalls = 2000, machines = 8, booted = 4;
        Path out, peers;
        boolean python = true, help;
        static final Set<String> PARTS = Set.of("launch", "qmp", "boot", "memory", "debian", "snapshot", "cloud");
        Set<String> only = PARTS;

        boolean runs(String part) { return only.contains(part); }

        static Options parse(String[] args) {
            Options o = new Options();
            Path home = benchHome();
            for (int i = 0; i < args.length; i++) {
                String a = args[i];
                switch (a) {
                    case "-h", "--help" -> o.help = true;
                    case "--no-python" -> o.python = false;
                    case "--runs" -> o.runs = positive(a, value(args, ++i, a));
                    case "--qmp" -> o.qmpCalls = positive(a, value(args, ++i, a));
                    case "--machines" -> o.machines = positive(a, value(args, ++i, a));
                    case "--booted" -> o.booted = Integer.parseInt(value(args, ++i, a));
                    case "--out" -> o.out = Path.of(value(args, ++i, a));
                    case "--peers" -> o.peers = Path.of(value(args, ++i, a));
                    case "--only" -> {
                        o.only = Set.of(value(args, ++i, a).split(","));
                        for (String p : o.only) {
                            if (!PARTS.contains(p)) throw new IllegalArgumentException("--only: unknown part " + p);
                        }
                    }
                    default -> throw new IllegalArgumentException("unknown argument " + a);
                }
            }
            if (o.booted < 0) throw new IllegalArgumentException("--booted must be 0 or more");
            if (o.peers == null) o.peers = home.resolve("peers");
            if (o.out == null) {
                o.out = home.resolve("target/results").resolve(LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss")));
            }
            return o;
        }

        private static String value(String[] args, int i, String name) {
            if (i >= args.length) throw new IllegalArgumentException(name + " needs a value");
            return args[i];
        }

        private static int positive(String name, String v) {
            int n = Integer.parseInt(v);
            if (n < 1) throw new IllegalArgumentException(name + " must be at least 1");
            return n;
        }

        /** kiln-bench's folder: -Dkiln.bench.home, else found from this class's jar (kiln-bench/target/…jar). */
        static Path benchHome() {
            String prop = System.getProperty("kiln.bench.home");
            if (prop != null) return Path.of(prop);
            try {
                Path code = Path.of(PeerBenchmark.class.getProtectionDomain().getCodeSource().getLocation().toURI());
                // kiln-bench/target/kiln-bench-….jar or kiln-bench/target/classes
                return code.getParent().getParent();
            } catch (Exception e) {
                return Path.of("kiln-bench");
            }
        }
    }

    /** A booted guest (start() awaits its agent), or one whose CPUs never run (nothing to await). */
    private static QemuMachine.Builder perMachine(GuestImage image, boolean boot) {
        QemuMachine.Builder b = QemuMachine.builder().image(image);
        return boot ? b : b.paused(true).readiness();
    }
}

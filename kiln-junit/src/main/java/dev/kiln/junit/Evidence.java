package dev.kiln.junit;

import dev.kiln.KilnException;
import dev.kiln.Machine;
import dev.kiln.qemu.QemuMachine;
import dev.kiln.vmm.VmmMachine;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import java.util.stream.Stream;

/**
 * What machines leave behind when a test fails, written to {@code <base>/<class>/<test>/<machine-id>/}:
 * {@code console.txt}, {@code vmm.log}, {@code qmp.txt} (when QMP is on), {@code command-line.txt} and
 * {@code machine.txt}; and the failure's stack trace in {@code <base>/<class>/<test>/failure.txt}.
 */
final class Evidence {
    private static final Logger LOG = LoggerFactory.getLogger(KilnExtension.class);
    private static final Pattern SEGMENT = Pattern.compile("\\[([^:\\]]+):([^\\]]*)]");
    private static final Pattern SHELL_SAFE = Pattern.compile("[A-Za-z0-9_/.,:=@%+-]+");

    private Evidence() {}

    /** The directory of a test, or of a class-level phase such as {@code beforeAll} when there is no test. */
    static Path testDir(ExtensionContext context, String classPhase) {
        Path base = Path.of(context.getConfigurationParameter(KilnExtension.EVIDENCE_DIR_PROPERTY)
                .orElse(KilnExtension.DEFAULT_EVIDENCE_DIR));
        String testClass = context.getTestClass().map(Class::getName).orElse("engine");
        String test = context.getTestMethod().isPresent() ? testSegment(context.getUniqueId()) : classPhase;
        return base.resolve(sanitize(testClass)).resolve(sanitize(test)).toAbsolutePath().normalize();
    }

    /**
     * The test's part of its unique id, below its class: {@code [method:boots()]} gives {@code boots},
     * {@code [test-template:t(int)]/[test-template-invocation:#2]} gives {@code t_int-2}, and parameter types go
     * without their packages.
     */
    static String testSegment(String uniqueId) {
        List<String> values = new ArrayList<>();
        Matcher m = SEGMENT.matcher(uniqueId);
        while (m.find()) {
            if (m.group(1).contains("class")) values.clear(); // keep what lies below the innermost class
            else values.add(decode(m.group(2)).replace("()", "").replaceAll("[\\w$]+\\.", "")); // t(java.lang.String): t(String)
        }
        return values.stream().map(Evidence::sanitize).collect(Collectors.joining("-"));
    }

    private static String decode(String s) {
        try {
            return URLDecoder.decode(s, StandardCharsets.UTF_8);
        } catch (IllegalArgumentException e) {
            return s;
        }
    }

    /** A name safe as one path element: letters, digits, '.', '_' and '-'; never empty, hidden or "..". */
    static String sanitize(String name) {
        String s = name.replaceAll("[^A-Za-z0-9._-]+", "_").replaceAll("^[._]+|_+$", "");
        if (s.isEmpty()) s = "_";
        return s.length() > 120 ? s.substring(0, 120) : s;
    }

    /**
     * Writes the evidence of {@code vms} under {@code dir}, publishes it as report entries and returns
     * {@code dir}. The directory is emptied the first time a run writes to it, so it never mixes runs.
     */
    static Path write(ExtensionContext context, Path dir, List<ManagedVm> vms, Throwable failure) {
        try {
            clearOnce(context, dir);
            Files.createDirectories(dir);
            Files.writeString(dir.resolve("failure.txt"), stackTrace(failure));
            Map<String, String> entry = new LinkedHashMap<>();
            entry.put("kiln.evidence", dir.toString());
            Map<ManagedVm, Path> written = new LinkedHashMap<>();
            for (ManagedVm vm : vms) {
                Path vmDir = dir.resolve(sanitize(vm.machine().id()));
                writeMachine(vmDir, vm);
                written.put(vm, vmDir);
                entry.put("kiln.vm." + vm.machine().id(), vm.label() + ": " + vmDir);
            }
            context.publishReportEntry(entry);
            written.forEach((vm, vmDir) -> publish(context, vm, vmDir));
            return dir;
        } catch (IOException e) {
            throw new KilnException("cannot write Kiln evidence to " + dir + ": " + e.getMessage(), e);
        }
    }

    private static void clearOnce(ExtensionContext context, Path dir) {
        context.getStore(ExtensionContext.Namespace.create(Evidence.class))
                .computeIfAbsent("cleared:" + dir, k -> deleteTree(dir));
    }

    private static Boolean deleteTree(Path dir) {
        if (!Files.exists(dir)) return true;
        try (Stream<Path> all = Files.walk(dir)) {
            for (Path p : all.sorted(Comparator.reverseOrder()).toList()) Files.deleteIfExists(p);
            return true;
        } catch (IOException e) {
            throw new KilnException("cannot clear old Kiln evidence in " + dir + ": " + e.getMessage(), e);
        }
    }

    private static void writeMachine(Path vmDir, ManagedVm vm) throws IOException {
        Machine m = vm.machine();
        Files.createDirectories(vmDir);
        writeText(vmDir.resolve("console.txt"), () -> m.console().transcript());
        writeText(vmDir.resolve("vmm.log"), m::vmmLog);
        if (m instanceof VmmMachine v) writeText(vmDir.resolve("command-line.txt"), () -> shellQuoted(v.commandLine()) + "\n");
        if (m instanceof QemuMachine q) {
            String qmp = qmpTranscript(q);
            if (qmp != null) writeText(vmDir.resolve("qmp.txt"), () -> qmp);
        }
        writeText(vmDir.resolve("machine.txt"), () -> describe(vm));
    }

    /** Writes what {@code content} gives, or why it could not be had: one broken part spoils no other. */
    private static void writeText(Path file, Callable<String> content) throws IOException {
        String text;
        try {
            text = content.call();
        } catch (Exception e) {
            text = "(unavailable: " + e + ")\n";
        }
        Files.writeString(file, text);
    }

    private static String qmpTranscript(QemuMachine m) {
        try {
            return String.join("\n", m.qmp().transcript()) + "\n";
        } catch (KilnException e) {
            return null; // QMP off
        }
    }

    private static String describe(ManagedVm vm) {
        Machine m = vm.machine();
        String exit = m.exitCode().isPresent() ? "exit code " + m.exitCode().getAsInt() : m.isRunning() ? "still running" : "-";
        StringBuilder b = new StringBuilder()
                .append("declared: ").append(vm.label()).append('\n')
                .append("id: ").append(m.id()).append('\n')
                .append("backend: ").append(m.backend().displayName()).append('\n')
                .append("state: ").append(m.state()).append('\n')
                .append("exit: ").append(exit).append('\n')
                .append("pid: ").append(m.pid().isPresent() ? m.pid().getAsLong() : "-").append('\n');
        if (m instanceof QemuMachine q) b.append("accelerator: ").append(q.accelerator()).append('\n');
        b.append("spec: ").append(m.spec()).append('\n')
                .append("timings: ").append(vm.timings(null)).append('\n')
                .append("console bytes: ").append(m.console().totalBytes()).append('\n')
                .append("transitions:\n");
        m.transitions().forEach(t -> b.append("  ").append(t.at()).append(' ').append(t).append('\n'));
        return b.toString();
    }

    /** The command line as a shell would take it, to run it again by hand. */
    static String shellQuoted(List<String> args) {
        return args.stream()
                .map(a -> SHELL_SAFE.matcher(a).matches() ? a : "'" + a.replace("'", "'\\''") + "'")
                .collect(Collectors.joining(" "));
    }

    private static void publish(ExtensionContext context, ManagedVm vm, Path vmDir) {
        try {
            context.publishDirectory(sanitize(vm.machine().id()), target -> {
                try (Stream<Path> files = Files.list(vmDir)) {
                    for (Path f : files.toList()) Files.copy(f, target.resolve(f.getFileName()));
                }
            });
        } catch (RuntimeException e) {
            // No output directory for file entries in this launcher: the report entry names the files anyway.
            LOG.debug("could not publish {} as a file entry: {}", vmDir, e.toString());
        }
    }

    static String stackTrace(Throwable t) {
        StringWriter s = new StringWriter();
        t.printStackTrace(new PrintWriter(s));
        return s.toString();
    }
}

package dev.kiln.junit;

import dev.kiln.support.Executables;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.platform.engine.OutputDirectoryCreator;
import org.junit.platform.engine.TestDescriptor;
import org.junit.platform.engine.TestExecutionResult;
import org.junit.platform.engine.reporting.FileEntry;
import org.junit.platform.engine.reporting.ReportEntry;
import org.junit.platform.testkit.engine.EngineExecutionResults;
import org.junit.platform.testkit.engine.EngineTestKit;
import org.junit.platform.testkit.engine.Event;
import org.opentest4j.AssertionFailedError;
import org.opentest4j.TestAbortedException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.platform.engine.discovery.DiscoverySelectors.selectClass;

/** Runs the {@link Samples} through the EngineTestKit and checks what a user would see when things go wrong. */
class KilnExtensionFailuresTest {
    private static final String NO_QEMU = "/nonexistent/qemu-system-x86_64";

    @TempDir
    Path evidence;

    @AfterAll
    static void nothingLeft() {
        LeakCheck.assertNoneLeft();
    }

    @Test
    void aFailingTestLeavesTheEvidenceOfItsMachinesAndSaysWhere() throws IOException {
        requireQemu();
        // Concurrently: the tests share the class's machine and write their evidence at the same time.
        EngineExecutionResults results = run(Samples.Failing.class, Map.of(
                "junit.jupiter.execution.parallel.enabled", "true",
                "junit.jupiter.execution.parallel.mode.default", "concurrent"));
        results.testEvents().assertStatistics(s -> s.started(6).succeeded(1).failed(4).aborted(1));
        Path classDir = evidence.resolve("dev.kiln.junit.Samples_Failing");

        Map<String, Throwable> failures = throwables(results.testEvents().failed().stream());
        assertThat(failures).containsOnlyKeys("assertionFails", "throwsAnException", "setUpFails", "tearDownFails");
        for (var f : failures.entrySet()) {
            Path dir = classDir.resolve(f.getKey());
            // The failure keeps its own type and message; where the evidence went rides along as a suppressed note.
            assertThat(f.getValue().getSuppressed()).filteredOn(KilnEvidence.class::isInstance).singleElement()
                    .satisfies(e -> assertThat(((KilnEvidence) e).directory()).isEqualTo(dir))
                    .satisfies(e -> assertThat(e).hasMessage("Kiln evidence: " + dir));
            assertThat(dir.resolve("failure.txt")).content().contains(f.getValue().toString());
            List<Path> machines = subdirectories(dir);
            assertThat(machines).hasSize(1);
            Path m = machines.getFirst();
            assertThat(m.resolve("console.txt")).content().contains("KILN-READY");
            assertThat(m.resolve("command-line.txt")).content().contains("qemu-system").contains("-kernel");
            assertThat(m.resolve("qmp.txt")).content().contains("qmp_capabilities");
            assertThat(m.resolve("vmm.log")).exists();
            assertThat(m.resolve("machine.txt")).content().contains("declared: @Vm Failing.vm").contains("state: RUNNING")
                    .contains("backend: QEMU").contains("NEW → STARTING (start())").contains("STARTING → RUNNING");
        }

        Throwable assertion = failures.get("assertionFails");
        assertThat(assertion).isInstanceOf(AssertionFailedError.class).hasNoCause();
        var diff = (AssertionFailedError) assertion; // IDEs still show the diff
        assertThat(diff.isExpectedDefined() && diff.isActualDefined()).isTrue();
        assertThat(diff.getExpected().getStringRepresentation()).contains("something else");
        assertThat(diff.getActual().getStringRepresentation()).contains("guest says hi");
        assertThat(failures.get("throwsAnException")).isExactlyInstanceOf(IllegalStateException.class).hasMessage("boom");
        assertThat(failures.get("setUpFails")).isExactlyInstanceOf(IllegalStateException.class).hasMessage("setup broke");
        assertThat(failures.get("tearDownFails")).isExactlyInstanceOf(IllegalStateException.class).hasMessage("teardown broke");

        Throwable aborted = throwables(results.testEvents().aborted().stream()).get("isAborted");
        assertThat(aborted).isInstanceOf(TestAbortedException.class).hasMessage("Assumption failed: not today").hasNoCause();
        assertThat(classDir.resolve("isAborted")).doesNotExist();
        assertThat(classDir.resolve("passes")).doesNotExist();

        List<Map<String, String>> entries = results.testEvents().reportingEntryPublished()
                .map(e -> e.getRequiredPayload(ReportEntry.class).getKeyValuePairs()).toList();
        assertThat(entries).extracting(e -> e.get("kiln.evidence"))
                .containsExactlyInAnyOrder(failures.keySet().stream().map(t -> classDir.resolve(t).toString()).toArray(String[]::new));
        assertThat(entries).allSatisfy(e -> assertThat(e.keySet()).anyMatch(k -> k.startsWith("kiln.vm.")));
        List<Path> published = results.testEvents().fileEntryPublished().map(e -> e.getRequiredPayload(FileEntry.class).getPath()).toList();
        assertThat(published).hasSize(4).allSatisfy(p -> assertThat(p.resolve("console.txt")).content().contains("KILN-READY"));
        LeakCheck.assertNoneLeft();
    }

    @Test
    void withoutQemuAKilnTestIsSkippedAndSaysWhy() {
        EngineExecutionResults results = run(Samples.NeedsQemu.class, Map.of(KilnExtension.QEMU_BINARY_PROPERTY, NO_QEMU));
        List<String> reasons = results.containerEvents().skipped().map(e -> e.getRequiredPayload(String.class)).toList();
        assertThat(reasons).singleElement().asString().contains("QEMU not found", NO_QEMU, "KILN_QEMU");
        assertThat(results.testEvents().started().count()).isZero();
    }

    @Test
    void withoutQemuAndDisabledWithoutQemuOffTheClassFailsWithTheLaunchError() {
        EngineExecutionResults results = run(Samples.InsistsOnQemu.class, Map.of(KilnExtension.QEMU_BINARY_PROPERTY, NO_QEMU));
        Throwable t = throwables(results.containerEvents().failed().stream()).get("InsistsOnQemu");
        assertThat(t).hasMessageContaining("@Vm InsistsOnQemu.vm").hasMessageContaining(NO_QEMU);
        assertThat(results.testEvents().started().count()).isZero();
    }

    @Test
    void aSpecMethodThatThrowsFailsTheClassNamingIt() {
        EngineExecutionResults results = run(Samples.SpecThrows.class, Map.of(KilnExtension.QEMU_BINARY_PROPERTY, "/bin/true"));
        Throwable t = throwables(results.containerEvents().failed().stream()).get("SpecThrows");
        assertThat(t).hasMessage("@Vm SpecThrows.vm: spec method SpecThrows.broken() threw java.lang.IllegalStateException: no spec today")
                .hasCauseInstanceOf(IllegalStateException.class);
    }

    @Test
    void aFieldOfAnotherTypeFailsTheClassNamingIt() {
        EngineExecutionResults results = run(Samples.WrongType.class, Map.of(KilnExtension.QEMU_BINARY_PROPERTY, "/bin/true"));
        Throwable t = throwables(results.containerEvents().failed().stream()).get("WrongType");
        assertThat(t).hasMessage("@Vm WrongType.vm has type java.lang.String; a @Vm is a dev.kiln.Machine, a QemuMachine or a FirecrackerMachine");
    }

    @Test
    void anImageKilnDoesNotBuildOrPackagesWithoutDebianFailTheClassNamingThem() {
        Throwable packages = throwables(run(Samples.PackagesWithoutDebian.class, Map.of(KilnExtension.QEMU_BINARY_PROPERTY, "/bin/true"))
                .containerEvents().failed().stream()).get("PackagesWithoutDebian");
        assertThat(packages).hasMessage("@Vm PackagesWithoutDebian.vm: packages need image = \"debian\"");
        Throwable image = throwables(run(Samples.UnknownImage.class, Map.of(KilnExtension.QEMU_BINARY_PROPERTY, "/bin/true"))
                .containerEvents().failed().stream()).get("UnknownImage");
        assertThat(image).hasMessageStartingWith("@Vm UnknownImage.vm: image = \"alpine\" is not an image Kiln builds");
    }

    @Test
    void aMissingSpecMethodFailsTheTestNamingIt() {
        EngineExecutionResults results = run(Samples.SpecMissing.class, Map.of(KilnExtension.QEMU_BINARY_PROPERTY, "/bin/true"));
        Throwable t = throwables(results.testEvents().failed().stream()).get("neverRuns");
        assertThat(t).hasMessageStartingWith("@Vm SpecMissing.vm: no method noSuchMethod() in dev.kiln.junit.Samples$SpecMissing");
    }

    @Test
    void whenOneMachineCannotStartTheOthersAreClosedAndTheFailureIsClear() {
        requireQemu();
        EngineExecutionResults results = run(Samples.OneCannotStart.class, Map.of());
        Throwable t = throwables(results.containerEvents().failed().stream()).get("OneCannotStart");
        assertThat(t).hasMessageStartingWith("@Vm OneCannotStart.bad").hasMessageContaining("kernel not found: /nonexistent/vmlinuz");
        assertThat(t.getSuppressed()).as("the good machine was stopped, not failed").isEmpty();
        assertThat(results.testEvents().started().count()).isZero();
        LeakCheck.assertNoneLeft();
    }

    @Test
    void aMachineThatNeverGetsReadyFailsNamingItShowingTheConsoleAndLeavingEvidence() throws IOException {
        requireQemu();
        EngineExecutionResults results = run(Samples.NeverReady.class, Map.of());
        Throwable t = throwables(results.testEvents().failed().stream()).get("neverRuns");
        Path dir = evidence.resolve("dev.kiln.junit.Samples_NeverReady").resolve("neverRuns_QemuMachine");
        assertThat(t.getMessage())
                .startsWith("@Vm parameter #0 of NeverReady.neverRuns() (machine qemu-")
                .contains("did not start", "timed out after 5 s waiting for /\\QKILN-READY\\E/", "last seen:")
                .endsWith("\n  Kiln evidence: " + dir);
        Path machine = subdirectories(dir).getFirst();
        assertThat(t.getMessage()).contains(machine.getFileName().toString());
        assertThat(machine.resolve("console.txt")).content().isNotBlank().doesNotContain("KILN-READY");
        assertThat(machine.resolve("command-line.txt")).content().contains("rdinit=/bin/sh");
        LeakCheck.assertNoneLeft();
    }

    @Test
    void aFirecrackerMachineOnAHostWithoutUsableKvmFailsAtOnceSayingWhy() {
        String fc = System.getenv("FIRECRACKER_BIN");
        Assumptions.assumeTrue(fc != null && Executables.find(fc).isPresent(), "FIRECRACKER_BIN is not set: point it at a Firecracker release binary");
        Assumptions.assumeFalse(dev.kiln.support.HostKvm.usable(), "this host has real KVM: the guest would boot");
        EngineExecutionResults results = run(Samples.OnFirecracker.class, Map.of());
        Throwable t = throwables(results.containerEvents().failed().stream()).get("OnFirecracker");
        assertThat(t).hasMessageStartingWith("@Vm OnFirecracker.vm (machine firecracker-")
                .hasMessageContaining("Firecracker cannot boot a guest on this host: it needs real KVM")
                .hasMessageContaining(dev.kiln.support.HostKvm.whyUnusable());
        assertThat(results.testEvents().started().count()).isZero();
        LeakCheck.assertNoneLeft();
    }

    @Test
    void aFieldDeclaredForOneBackendCannotRunOnTheOther() {
        EngineExecutionResults results = run(Samples.BackendMismatch.class, Map.of(KilnExtension.QEMU_BINARY_PROPERTY, "/bin/true"));
        Throwable t = throwables(results.containerEvents().failed().stream()).get("BackendMismatch");
        assertThat(t).hasMessage("@Vm BackendMismatch.vm is declared as QemuMachine but runs on Firecracker: declare it as"
                + " dev.kiln.Machine, or drop backend = \"firecracker\"");
    }

    @Test
    void aTemplateQemuCannotSaveFallsBackToColdBootsAndSaysWhy() {
        requireQemu();
        EngineExecutionResults results = run(Samples.TemplateBlocked.class, Map.of());
        results.testEvents().assertStatistics(s -> s.started(2).succeeded(2));
        List<String> said = results.allEvents().reportingEntryPublished()
                .map(e -> e.getRequiredPayload(ReportEntry.class).getKeyValuePairs().get("kiln.template")).filter(v -> v != null).toList();
        assertThat(said).as("the reason, said once for the class").singleElement().asString()
                .contains("@Vm TemplateBlocked.vm: no template").contains("State blocked by non-migratable device")
                .contains("virtio-crypto").contains("each test boots its machine cold");
        LeakCheck.assertNoneLeft();
    }

    @Test
    void aTemplateForAClassMachineIsAConfigurationError() {
        EngineExecutionResults results = run(Samples.TemplateOnAStaticField.class, Map.of(KilnExtension.QEMU_BINARY_PROPERTY, "/bin/true"));
        Throwable t = throwables(results.containerEvents().failed().stream()).get("TemplateOnAStaticField");
        assertThat(t).hasMessageContaining("@Vm TemplateOnAStaticField.vm: template = true is for per-test machines");
    }

    private EngineExecutionResults run(Class<?> sample, Map<String, String> parameters) {
        return EngineTestKit.engine("junit-jupiter")
                .selectors(selectClass(sample))
                .configurationParameter(Samples.ENABLED, "true")
                .configurationParameter(KilnExtension.EVIDENCE_DIR_PROPERTY, evidence.toString())
                .configurationParameters(parameters)
                .outputDirectoryCreator(new OutputDirectoryCreator() { // where file entries go
                    @Override
                    public Path getRootDirectory() {
                        return evidence.resolve("published");
                    }

                    @Override
                    public Path createOutputDirectory(TestDescriptor test) throws IOException {
                        return Files.createDirectories(getRootDirectory().resolve(Evidence.sanitize(test.getUniqueId().toString())));
                    }
                })
                .execute();
    }

    /** The failures of finished events, by test method name or class simple name. */
    private static Map<String, Throwable> throwables(Stream<Event> events) {
        Map<String, Throwable> m = new HashMap<>();
        events.forEach(e -> {
            String name = e.getTestDescriptor().getLegacyReportingName().replaceAll("\\(.*", "");
            name = name.substring(name.lastIndexOf('$') + 1);
            m.put(name, e.getRequiredPayload(TestExecutionResult.class).getThrowable().orElseThrow());
        });
        return m;
    }

    private static List<Path> subdirectories(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.filter(Files::isDirectory).collect(Collectors.toList());
        }
    }

    private static void requireQemu() {
        String bin = System.getenv().getOrDefault("KILN_QEMU", "qemu-system-x86_64");
        Assumptions.assumeTrue(Executables.find(bin).isPresent(), "QEMU not found (" + bin + "): install qemu-system-x86 to run this test");
    }
}

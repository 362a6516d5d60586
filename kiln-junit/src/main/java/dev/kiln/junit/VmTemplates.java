package dev.kiln.junit;

import dev.kiln.KilnException;
import dev.kiln.Snapshot;
import dev.kiln.SnapshotException;
import dev.kiln.support.WorkDir;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.nio.file.Path;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.BiConsumer;

/**
 * The templates of one test class's {@code @Vm(template = true)} machines, one per declaration (its annotation and
 * type), made the first time a test asks and removed with the class: kept in the class's store, so JUnit closes it.
 * A declaration whose machine cannot be saved is remembered with the reason, and its tests cold-boot.
 */
final class VmTemplates implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(KilnExtension.class);
    private static final ExtensionContext.Namespace NAMESPACE = ExtensionContext.Namespace.create(KilnExtension.class);

    /** A declaration's template, or why it has none. */
    private record Made(Snapshot template, Path dir, String fallback) {}

    private final Map<String, Made> made = new ConcurrentHashMap<>();
    private final BiConsumer<String, String> report;

    private VmTemplates(BiConsumer<String, String> report) {
        this.report = report;
    }

    /** The templates of the class {@code context} runs in (its own context, if it is a class's). */
    static VmTemplates of(ExtensionContext context) {
        ExtensionContext classContext = classOf(context);
        return classContext.getStore(NAMESPACE).computeIfAbsent(key(classContext),
                k -> new VmTemplates(classContext::publishReportEntry), VmTemplates.class);
    }

    /** Removes the templates of a class's context, if it made any (its afterAll: before leak checks run). */
    static void closeIn(ExtensionContext context) {
        VmTemplates t = context.getStore(NAMESPACE).get(key(context), VmTemplates.class);
        if (t != null) t.close();
    }

    private static ExtensionContext classOf(ExtensionContext context) {
        ExtensionContext c = context;
        while (c.getTestMethod().isPresent() && c.getParent().isPresent()) c = c.getParent().get();
        return c;
    }

    private static String key(ExtensionContext classContext) {
        return "templates:" + classContext.getUniqueId();
    }

    /**
     * The template to clone the request's machine from, made now if it is the first request of its declaration; empty
     * when its machine cannot be saved, and the test boots it cold (said once, with the reason).
     */
    Optional<Snapshot> forRequest(VmRequest request) {
        String key = request.testClass().getName() + " " + request.type().getName() + " " + request.vm();
        Made m = made.computeIfAbsent(key, k -> make(request));
        return Optional.ofNullable(m.template());
    }

    private Made make(VmRequest request) {
        Path dir = WorkDir.create(Path.of(System.getProperty("java.io.tmpdir")), "kiln-template-");
        long t0 = System.nanoTime();
        try {
            Snapshot template = Snapshot.template(request.spec(), dir.resolve("template"));
            LOG.info("{}: template made in {} ms; each test gets a clone", request.label(), (System.nanoTime() - t0) / 1_000_000);
            return new Made(template, dir, null);
        } catch (SnapshotException e) {
            WorkDir.delete(dir);
            String why = request.label() + ": no template (" + e.getMessage() + "); each test boots its machine cold";
            LOG.warn("{}", why);
            report.accept("kiln.template", why);
            return new Made(null, null, why);
        } catch (RuntimeException e) {
            WorkDir.delete(dir);
            throw new KilnException(request.label() + ": its template did not start: " + e.getMessage(), e);
        }
    }

    @Override
    public void close() {
        for (Made m : made.values()) if (m.dir() != null) WorkDir.delete(m.dir());
        made.clear();
    }
}

package dev.kiln.os;

import dev.kiln.ExitStatus;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

final class OsTestSupport {
    static final Duration TIMEOUT = Duration.ofSeconds(10);

    private OsTestSupport() {}

    /** Reads until end of file, failing instead of hanging if the writer never closes. */
    static String readAll(Fd fd) {
        return assertTimeoutPreemptively(TIMEOUT, () -> {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            byte[] buf = new byte[4096];
            for (int n; (n = Posix.read(fd, buf, 0, buf.length)) > 0; ) out.write(buf, 0, n);
            return out.toString(StandardCharsets.UTF_8);
        });
    }

    static ExitStatus await(SpawnedProcess process) {
        return process.waitFor(TIMEOUT).orElseThrow(() -> new AssertionError(process + " did not end within " + TIMEOUT));
    }

    /** Whether close-on-exec is set, as the kernel reports it (O_CLOEXEC is octal 02000000 in "flags:"). */
    static boolean cloexec(Fd fd) throws IOException {
        String flags = Files.readAllLines(Path.of("/proc/self/fdinfo/" + fd.number())).stream()
                .filter(l -> l.startsWith("flags:")).findFirst().orElseThrow().substring(6).trim();
        return (Integer.parseInt(flags, 8) & 02000000) != 0;
    }

    /** The pipes and sockets this JVM holds open, and its child processes: what a leaking test would leave. */
    static Set<String> openPipesSocketsAndChildren() throws IOException {
        // The JDK's socket channels keep one socket open for good from their first use (the "pre-close" fd that
        // close uses to wake blocked threads); create it before the first snapshot so it is not counted as ours.
        SocketChannel.open(StandardProtocolFamily.UNIX).close();
        try (Stream<Path> fds = Files.list(Path.of("/proc/self/fd"))) {
            Set<String> held = fds.map(fd -> {
                try {
                    return Files.readSymbolicLink(fd).toString();
                } catch (IOException e) {
                    return "gone"; // e.g. the descriptor Files.list itself used
                }
            }).filter(t -> t.startsWith("pipe:") || t.startsWith("socket:")).collect(Collectors.toSet());
            ProcessHandle.current().children().forEach(child -> held.add("child " + child.pid()));
            return held;
        }
    }

    static String target(int fdNumber) throws IOException {
        return Files.readSymbolicLink(Path.of("/proc/self/fd/" + fdNumber)).toString();
    }
}

package dev.kiln.bench.jmh;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import dev.kiln.agent.QgaGuest;
import dev.kiln.support.WorkDir;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

/**
 * QGA {@code guest-sync} round trip through Kiln's agent client, against the host's own qemu-guest-agent
 * binary listening on a unix socket: the agent and protocol of a guest, without a VM (and without TCG's
 * emulated vCPU in the way, so this is the client's and the agent's cost alone).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow"})
@Warmup(iterations = 2, time = 2)
@Measurement(iterations = 3, time = 2)
public class QgaSyncBench {
    private static final Path AGENT = Path.of(System.getenv().getOrDefault("KILN_QEMU_GA", "/usr/sbin/qemu-ga"));

    private Path dir;
    private Process agent;
    private QgaGuest guest;
    private long syncId;

    @Setup
    public void start() throws IOException {
        if (!Files.isExecutable(AGENT)) {
            throw new IllegalStateException("no qemu-guest-agent at " + AGENT + " (apt-get install qemu-guest-agent, or set KILN_QEMU_GA)");
        }
        dir = WorkDir.create(Path.of(System.getProperty("java.io.tmpdir")), "kiln-jmh-qga-");
        Files.createDirectories(dir.resolve("state"));
        Path socket = dir.resolve("qga.sock");
        agent = new ProcessBuilder(AGENT.toString(), "-m", "unix-listen", "-p", socket.toString(),
                "-t", dir.resolve("state").toString(), "-f", dir.resolve("qga.pid").toString())
                .redirectErrorStream(true).redirectOutput(dir.resolve("qga.log").toFile()).start();
        guest = new QgaGuest(() -> {
            try {
                return SocketChannel.open(UnixDomainSocketAddress.of(socket));
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }, () -> "(host agent: no console)", "jmh-host-qga");
        guest.awaitReady(Duration.ofSeconds(30));
    }

    @Benchmark
    public JsonNode guestSync() {
        return guest.call("guest-sync", JsonNodeFactory.instance.objectNode().put("id", ++syncId), Duration.ofSeconds(10));
    }

    @TearDown
    public void stop() throws InterruptedException {
        if (guest != null) guest.close();
        if (agent != null) {
            agent.destroyForcibly();
            agent.waitFor(10, TimeUnit.SECONDS);
        }
        if (dir != null) WorkDir.delete(dir);
    }
}

package dev.kiln.bench.jmh;

import dev.kiln.firecracker.FirecrackerMachine;
import dev.kiln.firecracker.api.model.InstanceInfo;
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

import java.util.concurrent.TimeUnit;

/**
 * Firecracker API round trip ({@code GET /}, the instance info) against a real Firecracker with no guest, over
 * the kept-alive API socket. Needs {@code FIRECRACKER_BIN} (or {@code firecracker} on PATH).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow"})
@Warmup(iterations = 2, time = 2)
@Measurement(iterations = 3, time = 2)
public class FirecrackerApiBench {
    private FirecrackerMachine vm;

    @Setup
    public void start() {
        String bin = System.getenv("FIRECRACKER_BIN");
        FirecrackerMachine.Builder b = FirecrackerMachine.builder();
        if (bin != null && !bin.isBlank()) b.binary(bin);
        vm = b.start();
    }

    @Benchmark
    public InstanceInfo describeInstance() {
        return vm.api().describeInstance();
    }

    @TearDown
    public void stop() {
        vm.close();
    }
}

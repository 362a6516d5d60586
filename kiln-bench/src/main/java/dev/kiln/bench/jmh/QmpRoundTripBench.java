package dev.kiln.bench.jmh;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.qemu.QemuMachine;
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

/** QMP {@code query-status} round trip against a real, paused QEMU (no guest). */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow"})
@Warmup(iterations = 2, time = 2)
@Measurement(iterations = 3, time = 2)
public class QmpRoundTripBench {
    private QemuMachine vm;

    @Setup
    public void start() {
        vm = QemuMachine.builder().noGuest().paused(true).machine("none").memoryMib(16).console(false).agent(false).start();
    }

    @Benchmark
    public JsonNode queryStatus() {
        return vm.command("query-status");
    }

    @TearDown
    public void stop() {
        vm.close();
    }
}

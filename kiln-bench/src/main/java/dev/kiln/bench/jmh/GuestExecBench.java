package dev.kiln.bench.jmh;

import dev.kiln.ExecResult;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Warmup;

import java.util.concurrent.TimeUnit;

/** {@code exec("true")} in a booted guest (the default image, TCG here): agent, guest-exec, status polls. */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow"})
@Warmup(iterations = 2, time = 3)
@Measurement(iterations = 3, time = 3)
public class GuestExecBench {
    @Benchmark
    public ExecResult execTrue(BootedGuest g) {
        ExecResult r = g.vm.guest().exec("true");
        if (r.exitCode() != 0) throw new IllegalStateException("true exited " + r.exitCode());
        return r;
    }
}

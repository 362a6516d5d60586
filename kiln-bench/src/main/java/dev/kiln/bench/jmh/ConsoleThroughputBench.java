package dev.kiln.bench.jmh;

import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

import java.time.Duration;
import java.util.concurrent.TimeUnit;

/**
 * Console throughput, guest to host: the guest writes {@value #KIB} KiB to its serial console and Kiln's
 * console reader sees all of it (the marker after it). Reported as KiB per second.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow"})
@Warmup(iterations = 2, time = 3)
@Measurement(iterations = 3, time = 3)
public class ConsoleThroughputBench {
    static final int KIB = 16;
    private long round;

    @Benchmark
    @OperationsPerInvocation(KIB)
    public void guestToHost(BootedGuest g) {
        String marker = "KILN-JMH-END-" + (++round);
        // 16 lines of 1023 'x' and a newline = 16 KiB, then the marker
        g.vm.guest().exec("sh", "-c", "i=0; l=$(head -c 1023 /dev/zero | tr '\\0' x); while [ $i -lt " + KIB
                + " ]; do echo \"$l\"; i=$((i+1)); done > /dev/console; echo " + marker + " > /dev/console");
        g.vm.console().await(marker, Duration.ofSeconds(60));
    }
}

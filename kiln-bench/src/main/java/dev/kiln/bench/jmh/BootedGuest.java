package dev.kiln.bench.jmh;

import dev.kiln.image.DefaultImage;
import dev.kiln.qemu.QemuMachine;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;

import java.time.Duration;

/** The default image booted once per trial, agent ready. */
@State(Scope.Benchmark)
public class BootedGuest {
    QemuMachine vm;

    @Setup
    public void boot() {
        vm = QemuMachine.builder().image(DefaultImage.get(System.err::println)).readyTimeout(Duration.ofSeconds(180)).start();
    }

    @TearDown
    public void shutdown() {
        vm.close();
    }
}

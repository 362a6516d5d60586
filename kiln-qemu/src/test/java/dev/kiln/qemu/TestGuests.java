package dev.kiln.qemu;

import dev.kiln.GuestImage;
import dev.kiln.image.DefaultImage;

import java.time.Duration;

/** Booting the default image for a test: started, its ready marker seen, its agent answering. */
final class TestGuests {
    static final Duration MARKER = Duration.ofSeconds(120), AGENT = Duration.ofSeconds(60);

    private TestGuests() {}

    static GuestImage image() {
        return DefaultImage.get(System.out::println);
    }

    /** Starts {@code builder}: start() returns once the image's ready marker was seen and its agent answers. */
    static QemuMachine bootReady(QemuMachine.Builder builder) {
        return builder.readyTimeout(MARKER).start();
    }

    /** Waits for the (next) ready marker and the agent: after a start, or after a reset. */
    static QemuMachine awaitReady(QemuMachine vm, GuestImage image) {
        vm.console().await(image.readyMarker(), MARKER);
        vm.guest().awaitReady(AGENT);
        return vm;
    }
}

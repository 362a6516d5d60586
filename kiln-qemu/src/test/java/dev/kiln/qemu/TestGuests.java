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

    /** Starts {@code builder} with the default image unless it has one; closes the machine if it never gets ready. */
    static QemuMachine bootReady(QemuMachine.Builder builder) {
        GuestImage image = builder.image() != null ? builder.image() : image();
        QemuMachine vm = builder.image(image).start();
        try {
            return awaitReady(vm, image);
        } catch (RuntimeException e) {
            vm.close();
            throw e;
        }
    }

    /** Waits for the (next) ready marker and the agent: after a start, or after a reset. */
    static QemuMachine awaitReady(QemuMachine vm, GuestImage image) {
        vm.console().await(image.readyMarker(), MARKER);
        vm.guest().awaitReady(AGENT);
        return vm;
    }
}

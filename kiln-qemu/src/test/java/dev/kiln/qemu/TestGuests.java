package dev.kiln.qemu;

import dev.kiln.GuestImage;
import dev.kiln.Probe;
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

    /** Waits until {@code path} exists in the guest (a command there signals that it is under way). */
    static void awaitGuestFile(QemuMachine vm, String path) {
        Probe.command("test", "-e", path).await(vm, Duration.ofSeconds(60));
    }
}

package dev.kiln.image;

import dev.kiln.GuestImage;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** Builds the default image in the real cache (the first run downloads packages) and boots it under QEMU TCG. */
class DefaultImageBootTest {
    static GuestImage image;

    @BeforeAll
    static void buildImage() {
        assumeTrue(Apt.onPath("apt-get") != null, "needs a Debian-like host (apt-get)");
        image = DefaultImage.get(System.out::println).validate();
    }

    @Test
    void aCacheHitIsFastAndStable() {
        long start = System.nanoTime();
        GuestImage again = DefaultImage.get(line -> fail("a cache hit must not build: " + line));
        long micros = (System.nanoTime() - start) / 1000;
        System.out.println("cache hit: " + micros + " µs");
        assertThat(again).isEqualTo(image);
        assertThat(micros).isLessThan(50_000);
        assertThat(image.readyMarker()).isEqualTo(DefaultImage.READY_MARKER);
        assertThat(image.cmdline()).contains("panic=-1");
        assertThat(DefaultImage.describe().cached()).isTrue();
        DefaultImage.describe().lines().forEach(System.out::println);
    }

    @Test
    void bootsToTheAgentAndPowersOffThroughIt(@TempDir Path dir) throws Exception {
        assumeTrue(TestVm.qemuAvailable(), "needs qemu-system-x86_64");
        try (TestVm vm = new TestVm(image, dir, "")) {
            Duration ready = vm.awaitMarker(Duration.ofSeconds(60));
            if (ready == null) fail("no " + image.readyMarker() + " within 60 s; console:\n" + vm.console());
            System.out.println("KILN-READY after " + ready.toMillis() + " ms");
            assertThat(vm.console()).doesNotContain("kiln-init:");

            if (!vm.guestSync(Duration.ofSeconds(30))) fail("qemu-ga did not answer guest-sync within 30 s; console:\n" + vm.console());
            vm.sendQga("{\"execute\":\"guest-shutdown\"}");
            if (!vm.process.waitFor(30, TimeUnit.SECONDS))
                fail("QEMU still runs 30 s after guest-shutdown; console:\n" + vm.console());
            assertThat(vm.process.exitValue()).as("QEMU exit code; console:\n%s", vm.console()).isZero();
            assertThat(vm.console()).contains("reboot: Power down");
        }
    }

    @Test
    void theConsoleKeepsAShell(@TempDir Path dir) throws Exception {
        assumeTrue(TestVm.qemuAvailable(), "needs qemu-system-x86_64");
        try (TestVm vm = new TestVm(image, dir, "")) {
            if (vm.awaitMarker(Duration.ofSeconds(60)) == null) fail("no ready marker; console:\n" + vm.console());
            var stdin = vm.process.getOutputStream();
            awaitPrompts(vm, 1);
            stdin.write("echo $((6*7))-$(cat /proc/sys/kernel/hostname); exit\n".getBytes());
            stdin.flush();
            // after `exit` init must respawn the shell, not die (that would panic the kernel and end QEMU)
            awaitPrompts(vm, 2);
            stdin.write("echo again-$((1+1))\n".getBytes());
            stdin.flush();
            long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (!vm.console().contains("again-2") && System.nanoTime() < end) Thread.sleep(20);
            assertThat(vm.console()).contains("42-kiln").contains("again-2");
            assertThat(vm.process.isAlive()).isTrue();
        }
    }

    @Test
    void vsockAgentModeIsChosenOnTheKernelCommandLine(@TempDir Path dir) throws Exception {
        assumeTrue(TestVm.qemuAvailable(), "needs qemu-system-x86_64");
        // No vhost-vsock device here (it needs /dev/vhost-vsock on the host): init must say so and still get ready.
        try (TestVm vm = new TestVm(image, dir, "kiln.agent=vsock kiln.agent_port=2048")) {
            if (vm.awaitMarker(Duration.ofSeconds(60)) == null) fail("no ready marker; console:\n" + vm.console());
            assertThat(vm.console()).contains("kiln-init: no virtio vsock device; qemu-ga not started");
        }
    }

    /** Waits until the console shows {@code n} shell prompts ("/ # "), i.e. n shells have started. */
    private static void awaitPrompts(TestVm vm, int n) throws InterruptedException {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (vm.console().split("/ # ", -1).length - 1 < n) {
            if (System.nanoTime() > end) fail("no shell prompt #" + n + " on the console:\n" + vm.console());
            Thread.sleep(20);
        }
    }
}

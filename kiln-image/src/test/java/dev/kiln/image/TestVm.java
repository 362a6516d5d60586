package dev.kiln.image;

import dev.kiln.GuestImage;
import dev.kiln.support.HostCpu;

import java.io.IOException;
import java.io.InputStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;

/** A QEMU microvm under TCG started with a plain ProcessBuilder, with a console transcript and a QGA socket. */
final class TestVm implements AutoCloseable {
    final Process process;
    final long startNanos = System.nanoTime();
    final Path qgaSocket;
    private final StringBuffer console = new StringBuffer();
    private volatile long markerNanos;
    /** QEMU's CPU time (all threads) when the marker came: less disturbed by other load on the host than wall time. */
    volatile Duration markerCpu;
    private SocketChannel qga;
    private final BlockingQueue<String> replies = new LinkedBlockingQueue<>();

    TestVm(GuestImage image, Path dir, String extraCmdline) throws IOException {
        qgaSocket = dir.resolve("qga.sock");
        List<String> cmd = new ArrayList<>(List.of("qemu-system-x86_64", "-M", "microvm,rtc=on,isa-serial=on", "-accel", "tcg",
                "-m", "256", "-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-serial", "stdio",
                "-kernel", image.kernel().toString(), "-initrd", image.initrd().toString(),
                "-append", ("console=ttyS0 tsc_early_khz=" + HostCpu.tscKhz() + " " + image.cmdline() + " " + extraCmdline).strip(),
                "-device", "virtio-serial-device",
                "-chardev", "socket,id=qga,path=" + qgaSocket + ",server=on,wait=off",
                "-device", "virtserialport,chardev=qga,name=org.qemu.guest_agent.0"));
        process = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String marker = image.readyMarker();
        Pattern readyLine = Pattern.compile("(?m)^" + Pattern.quote(String.valueOf(marker)) + "\r?$");
        Thread.ofVirtual().start(() -> {
            try (InputStream in = process.getInputStream()) {
                byte[] buf = new byte[8192];
                for (int n; (n = in.read(buf)) > 0; ) {
                    console.append(new String(buf, 0, n, StandardCharsets.UTF_8));
                    if (markerNanos == 0 && marker != null && readyLine.matcher(console).find()) {
                        markerNanos = System.nanoTime();
                        markerCpu = process.toHandle().info().totalCpuDuration().orElse(null);
                    }
                }
            } catch (IOException ignored) {
                // QEMU is gone
            }
        });
    }

    String console() {
        return console.toString();
    }

    /** Time from spawning QEMU to the ready marker, waiting for it up to {@code timeout}; null when it did not come. */
    Duration awaitMarker(Duration timeout) throws InterruptedException {
        long end = System.nanoTime() + timeout.toNanos();
        while (markerNanos == 0 && System.nanoTime() < end && process.isAlive()) Thread.sleep(5);
        Thread.sleep(markerNanos == 0 ? 200 : 0); // let a dying QEMU's last words reach the transcript
        return markerNanos == 0 ? null : Duration.ofNanos(markerNanos - startNanos);
    }

    void sendQga(String json) throws IOException {
        if (qga == null) {
            qga = SocketChannel.open(StandardProtocolFamily.UNIX);
            qga.connect(UnixDomainSocketAddress.of(qgaSocket));
            Thread.ofVirtual().start(() -> {
                ByteBuffer buf = ByteBuffer.allocate(65536);
                StringBuilder line = new StringBuilder();
                try {
                    while (qga.read(buf) > 0) {
                        line.append(new String(buf.array(), 0, buf.position(), StandardCharsets.UTF_8));
                        buf.clear();
                        for (int nl; (nl = line.indexOf("\n")) >= 0; line.delete(0, nl + 1)) replies.add(line.substring(0, nl));
                    }
                } catch (IOException ignored) {
                    // closed
                }
            });
        }
        qga.write(ByteBuffer.wrap((json + "\n").getBytes(StandardCharsets.UTF_8)));
    }

    String nextReply(Duration timeout) throws InterruptedException {
        return replies.poll(timeout.toMillis(), TimeUnit.MILLISECONDS);
    }

    /** guest-sync until the agent answers with our id; true when it did within the timeout. */
    boolean guestSync(Duration timeout) throws IOException, InterruptedException {
        long end = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < end && process.isAlive()) {
            sendQga("{\"execute\":\"guest-sync\",\"arguments\":{\"id\":12345}}");
            for (String r; (r = nextReply(Duration.ofMillis(500))) != null; )
                if (r.replace(" ", "").contains("{\"return\":12345}")) return true;
        }
        return false;
    }

    @Override
    public void close() throws IOException {
        if (qga != null) qga.close();
        process.destroyForcibly();
        try {
            process.waitFor(10, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        Files.deleteIfExists(qgaSocket);
    }

    static boolean qemuAvailable() {
        return Apt.onPath("qemu-system-x86_64") != null;
    }
}

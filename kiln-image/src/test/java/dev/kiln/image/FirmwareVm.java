package dev.kiln.image;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;

/**
 * QEMU's q35 machine under TCG whose firmware boots a disk, started with a plain ProcessBuilder: SeaBIOS (QEMU's
 * default) or OVMF, the serial console on stdio with a transcript, and a virtio NIC on user-mode networking if asked
 * for (without its option ROM; OVMF has a driver of its own, and tries PXE and HTTP boot on it).
 * {@code graphics=off} makes SeaBIOS print on the serial port too (OVMF always does).
 */
final class FirmwareVm implements AutoCloseable {
    static final Path OVMF_CODE = Path.of("/usr/share/OVMF/OVMF_CODE_4M.fd"), OVMF_VARS = Path.of("/usr/share/OVMF/OVMF_VARS_4M.fd");

    enum Firmware { SEABIOS, OVMF }

    final Process process;
    private final long startNanos = System.nanoTime();
    private final StringBuffer console = new StringBuffer();

    /** Boots {@code disk} (raw or qcow2, as {@code format} says); {@code dir} takes OVMF's per-machine variable store. */
    FirmwareVm(Firmware firmware, Path disk, String format, boolean nic, Path dir) throws IOException {
        List<String> cmd = new ArrayList<>(List.of("qemu-system-x86_64", "-machine", "q35,graphics=off", "-accel", "tcg",
                "-m", "1024", "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot"));
        if (firmware == Firmware.OVMF) {
            Path vars = Files.copy(OVMF_VARS, dir.resolve("OVMF_VARS.fd"));
            cmd.addAll(List.of("-drive", "if=pflash,unit=0,format=raw,readonly=on,file=" + OVMF_CODE,
                    "-drive", "if=pflash,unit=1,format=raw,file=" + vars));
        }
        cmd.addAll(List.of("-drive", "file=" + disk + ",format=" + format + ",if=virtio"));
        if (nic) cmd.addAll(List.of("-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0,romfile="));
        process = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        Thread.ofVirtual().start(() -> {
            try (InputStream in = process.getInputStream()) {
                byte[] buf = new byte[8192];
                for (int n; (n = in.read(buf)) > 0; ) console.append(new String(buf, 0, n, StandardCharsets.UTF_8));
            } catch (IOException ignored) {
                // QEMU is gone
            }
        });
    }

    String console() {
        return console.toString();
    }

    /** The transcript without terminal escape sequences (systemd's colours, the firmware's screen control). */
    String plainConsole() {
        return console().replaceAll("\u001B(\\[[0-9;?=]*[A-Za-z]|c)", "");
    }

    /** Time from spawning QEMU until the console shows {@code pattern}, waiting up to {@code timeout}; null when it did not. */
    Duration await(Pattern pattern, Duration timeout) throws InterruptedException {
        long end = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < end && process.isAlive()) {
            if (pattern.matcher(console).find()) return Duration.ofNanos(System.nanoTime() - startNanos);
            Thread.sleep(50);
        }
        return pattern.matcher(console).find() ? Duration.ofNanos(System.nanoTime() - startNanos) : null;
    }

    void type(String text) throws IOException {
        process.getOutputStream().write(text.getBytes(StandardCharsets.UTF_8));
        process.getOutputStream().flush();
    }

    @Override
    public void close() {
        process.destroyForcibly();
        try {
            process.waitFor(10, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}

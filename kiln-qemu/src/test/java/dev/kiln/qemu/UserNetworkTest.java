package dev.kiln.qemu;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.time.Duration;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The legacy-free microvm preset with its user-mode NIC, port forwards and an extra channel: one boot. */
@ExtendWith(QemuAvailable.class)
class UserNetworkTest {
    static QemuMachine vm;

    @BeforeAll
    static void boot() {
        vm = TestGuests.bootReady(QemuMachine.builder().microvmPreset().forward(80).channel("org.kiln.test"));
    }

    @AfterAll
    static void teardown() {
        if (vm != null) vm.close();
        LeakCheck.assertNoneLeft();
    }

    @Test
    void thePresetHasNoLegacyDevicesAndItsConsoleIsTheVirtioConsole() {
        assertThat(vm.commandLine()).contains("microvm,x-option-roms=off,pic=off,pit=off,rtc=off,isa-serial=off");
        String cmdline = vm.guest().exec("cat", "/proc/cmdline").stdoutText();
        assertThat(cmdline).contains("console=hvc0").contains("reboot=t").doesNotContain("ttyS");
        assertThat(vm.guest().exec("cat", "/proc/consoles").stdoutText()).contains("hvc0");
        // The 8250 driver makes /dev/ttyS0-3 whatever the hardware; it finds no UART behind them.
        assertThat(vm.guest().exec("cat", "/proc/tty/driver/serial").stdoutText()).contains("uart:unknown").doesNotContain("16550");
        assertThat(vm.guest().exec("cat", "/sys/class/misc/hw_random/rng_current").stdoutText()).contains("virtio_rng");
        vm.console().send("echo ON-\"\"HVC0\n"); // the shell on the console answers
        vm.console().await("ON-HVC0", Duration.ofSeconds(30));
    }

    @Test
    void theGuestHasItsUserNetworkAddressAndItsRouteOut() {
        String addr = vm.guest().exec("ip", "addr", "show", "eth0").stdoutText();
        assertThat(addr).contains(QemuMachine.USER_GUEST_IP + "/24").contains(QemuMachine.USER_MAC);
        assertThat(vm.guest().exec("ip", "route").stdoutText()).contains("default via " + QemuMachine.USER_GATEWAY);
    }

    @Test
    void aGuestServerIsReachedFromJavaThroughTheForwardedPort() throws Exception {
        vm.guest().exec("sh", "-c", "mkdir -p /www && echo served-by-the-guest > /www/index.html && httpd -p 80 -h /www").orThrow();
        int port = vm.hostPort(80);
        assertThat(port).isPositive().isNotEqualTo(80);
        assertThat(httpGet(port)).contains("200 OK").endsWith("served-by-the-guest\n");
        assertThatThrownBy(() -> vm.hostPort(81)).hasMessageContaining("no host port to guest port 81");
    }

    @Test
    void aForwardAddedWhileTheMachineRunsWorksToo() throws Exception {
        vm.guest().exec("sh", "-c", "mkdir -p /www2 && echo second > /www2/index.html && httpd -p 8080 -h /www2").orThrow();
        int port = vm.addForward(8080, 0);
        assertThat(vm.hostPorts()).containsEntry(8080, port).containsKey(80);
        assertThat(httpGet(port)).endsWith("second\n");
    }

    @Test
    void aChannelCarriesBytesBothWays() throws Exception {
        SocketChannel ch = vm.channel("org.kiln.test");
        String port = "p=$(grep -l org.kiln.test /sys/class/virtio-ports/*/name); p=${p%/name}; p=/dev/${p##*/}; ";
        // The guest echoes one line back, upper-cased; through one open of the port (a second open is refused).
        vm.guest().exec("sh", "-c", port + "(exec 3<>$p; head -n 1 <&3 | tr a-z A-Z >&3) > /dev/null 2>&1 &").orThrow();
        // A port nobody has open drops bytes: wait until the guest has it open (QEMU says so in VSERPORT_CHANGE).
        vm.awaitEvent("VSERPORT_CHANGE", JsonMatch.of("{\"data\": {\"id\": \"chanport0\", \"open\": true}}"), Duration.ofSeconds(30));
        ch.write(ByteBuffer.wrap("hello channel\n".getBytes(StandardCharsets.US_ASCII)));
        var answer = java.util.concurrent.CompletableFuture.supplyAsync(() -> {
            ByteBuffer in = ByteBuffer.allocate(64);
            try {
                while (in.position() == 0 || in.get(in.position() - 1) != '\n') {
                    if (ch.read(in) < 0) break;
                }
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
            return new String(in.array(), 0, in.position(), StandardCharsets.US_ASCII);
        });
        assertThat(answer.get(30, java.util.concurrent.TimeUnit.SECONDS)).isEqualTo("HELLO CHANNEL\n");
        assertThatThrownBy(() -> vm.channel("nope")).hasMessageContaining("no channel 'nope'");
    }

    static String httpGet(int port) throws IOException {
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress("127.0.0.1", port), 10_000);
            s.setSoTimeout(30_000);
            OutputStream out = s.getOutputStream();
            out.write("GET / HTTP/1.0\r\nHost: x\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
            out.flush();
            InputStream in = s.getInputStream();
            return new String(in.readAllBytes(), StandardCharsets.US_ASCII);
        }
    }
}

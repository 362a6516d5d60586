package dev.kiln.qemu;

import dev.kiln.CloudInit;
import dev.kiln.ExecRequest;
import dev.kiln.ExecResult;
import dev.kiln.Firmware;
import dev.kiln.GuestImage;
import dev.kiln.GuestProcess;
import dev.kiln.KilnException;
import dev.kiln.LaunchException;
import dev.kiln.Share;
import dev.kiln.SnapshotException;
import dev.kiln.SshChannel;
import dev.kiln.image.DebianImage;
import dev.kiln.vmm.SshKeys;
import dev.kiln.vmm.spi.SshConnector;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.RandomAccessFile;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ServiceLoader;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * An image Kiln did not make ready for itself: a bootable GPT disk (built offline from Debian's packages, with
 * cloud-init and sshd but no guest agent) booted by SeaBIOS and by UEFI, configured by Kiln's cloud-init volume and
 * driven over SSH; its shares over virtio-fs and 9p; and what is refused: a disk that does not boot, a wrong host key,
 * a key the guest does not know, a cloud-init that fails.
 */
@ExtendWith(QemuAvailable.class)
class CloudImageTest {
    private static final Duration BOOT = Duration.ofSeconds(300);
    private static GuestImage cloud;

    @TempDir
    Path dir;

    @BeforeAll
    static void buildImage() {
        cloud = DebianImage.builder().noAgent().bootable().packages("cloud-init", "openssh-server", "sudo")
                .build(System.out::println);
    }

    @AfterAll
    static void nothingLeaks() {
        LeakCheck.assertNoneLeft();
    }

    private static QemuMachine.Builder cloudGuest() {
        return QemuMachine.builder().image(cloud).memoryMib(768).readyTimeout(BOOT);
    }

    @Test
    void seaBiosBootsItAndCloudInitConfiguresItAndSshDrivesIt() throws Exception {
        Path src = Files.createDirectories(dir.resolve("src")), docs = Files.createDirectories(dir.resolve("docs"));
        Files.writeString(src.resolve("main.c"), "int main(void) { return 0; }\n");
        Files.writeString(docs.resolve("README"), "read only\n");
        CloudInit config = CloudInit.builder().hostname("web1").user("app")
                .writeFile("/etc/kiln-test.conf", "answer=42\n", "0640")
                .runcmd("echo ran > /run/kiln-runcmd")
                .build();
        try (QemuMachine vm = cloudGuest().cloudInit(config).share(src, "/mnt/src")
                .share(new Share(docs, "/mnt/docs", true, Share.Transport.NINE_P)).start()) {
            assertThat(vm.commandLine()).doesNotContain("-kernel").anyMatch(a -> a.contains("bootindex=0"));
            assertThat(vm.console().transcript()).contains("SeaBIOS");
            assertThat(vm.guest()).isInstanceOf(SshChannel.class);
            assertThat(vm.guest().toString()).startsWith("SshChannel[").contains("ssh root@127.0.0.1:");
            try (SshChannel ssh = vm.ssh()) {
                assertThat(ssh.user()).isEqualTo("root");
            }
            SshChannel ssh = vm.ssh();
            assertThat(ssh.exec("true").exitCode()).as("the machine's session, still open after a user's close()").isZero();

            // cloud-init did what the spec said, and had finished when start() returned
            assertThat(vm.guest().exec("hostname").orThrow().stdoutText()).isEqualTo("web1\n");
            assertThat(vm.guest().succeed("stat -c '%a %s' /etc/kiln-test.conf; cat /etc/kiln-test.conf")).isEqualTo("640 10\nanswer=42\n");
            assertThat(vm.guest().succeed("cat /run/kiln-runcmd")).isEqualTo("ran\n");
            assertThat(vm.guest().succeed("cloud-init status")).contains("done");
            assertThat(vm.guest().succeed("sudo -n -u app sudo -n id -u")).isEqualTo("0\n");

            // the Guest API over SSH: argv, env, stdin, working dir, exit codes, streams
            ExecResult r = vm.guest().exec(ExecRequest.of("sh", "-c", "cat; echo \"$K in $(pwd)\"; echo err >&2; exit 3")
                    .stdin("in\n").env("K", "V").workingDir("/tmp").build());
            assertThat(r.exitCode()).isEqualTo(3);
            assertThat(r.stdoutText()).isEqualTo("in\nV in /tmp\n");
            assertThat(r.stderrText()).isEqualTo("err\n");
            try (GuestProcess cat = vm.guest().start("cat")) {
                cat.stdin().write("line\n".getBytes(StandardCharsets.UTF_8));
                cat.stdin().flush();
                BufferedReader out = new BufferedReader(new InputStreamReader(cat.stdout(), StandardCharsets.UTF_8));
                assertThat(out.readLine()).isEqualTo("line");
                cat.stdin().close();
                assertThat(cat.waitFor(Duration.ofSeconds(30))).isZero();
            }

            // SFTP both ways, byte for byte
            byte[] payload = new byte[3 << 20];
            new java.util.Random(7).nextBytes(payload);
            Path in = Files.write(dir.resolve("in.bin"), payload), back = dir.resolve("back.bin");
            vm.guest().copyIn(in, "/root/in.bin");
            vm.guest().copyOut("/root/in.bin", back);
            assertThat(Files.readAllBytes(back)).isEqualTo(payload);

            // shares: virtio-fs both ways, 9p read-only
            assertThat(vm.guest().succeed("cat /mnt/src/main.c")).contains("int main");
            vm.guest().succeed("echo from-guest > /mnt/src/out.txt");
            assertThat(src.resolve("out.txt")).hasContent("from-guest");
            assertThat(vm.guest().succeed("cat /mnt/docs/README")).isEqualTo("read only\n");
            assertThat(vm.guest().exec("sh", "-c", "touch /mnt/docs/x").exitCode()).isNotZero();
            assertThat(vm.guest().succeed("grep -E ' /mnt/(src|docs) ' /proc/mounts")).contains("virtiofs").contains("9p");

            // forwards: the host reaches the guest's sshd through a local forward, the guest the host through a remote one
            try (SshChannel.Forward local = ssh.forwardLocal(22); Socket s = new Socket()) {
                s.connect(local.listening(), 10_000);
                s.setSoTimeout(30_000);
                assertThat(new BufferedReader(new InputStreamReader(s.getInputStream(), StandardCharsets.US_ASCII)).readLine())
                        .startsWith("SSH-2.0-OpenSSH");
            }
            try (ServerSocket host = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
                CompletableFuture<String> greeted = CompletableFuture.supplyAsync(() -> {
                    try (Socket c = host.accept()) {
                        c.getOutputStream().write("hello from the host\n".getBytes(StandardCharsets.US_ASCII));
                        return "sent";
                    } catch (IOException e) {
                        throw new java.io.UncheckedIOException(e);
                    }
                });
                try (SshChannel.Forward remote = ssh.forwardRemote(18080, new InetSocketAddress("127.0.0.1", host.getLocalPort()))) {
                    assertThat(vm.guest().succeed("bash -c 'exec 3<>/dev/tcp/127.0.0.1/18080; head -n 1 <&3'", Duration.ofSeconds(30)))
                            .isEqualTo("hello from the host\n");
                    assertThat(greeted.get(30, TimeUnit.SECONDS)).isEqualTo("sent");
                }
            }

            // a guest reached over SSH cannot be saved (its keys would not carry over)
            assertThatThrownBy(() -> vm.snapshot(dir.resolve("snap"))).isInstanceOf(SnapshotException.class)
                    .hasMessageContaining("cannot be saved yet");
        }
    }

    @Test
    void uefiBootsTheSameDiskAndTheHostKeyIsPinned() {
        try (QemuMachine vm = cloudGuest().firmware(Firmware.UEFI).cloudInit(CloudInit.defaults()).start()) {
            assertThat(vm.commandLine()).anyMatch(a -> a.contains("if=pflash"));
            assertThat(vm.guest().succeed("test -d /sys/firmware/efi && echo uefi")).isEqualTo("uefi\n");
            SshConnector connector = ServiceLoader.load(SshConnector.class).findFirst().orElseThrow();
            InetSocketAddress sshd = vm.hostAddress(22);
            // A host key other than the one Kiln baked in: refused before any key of ours is offered.
            var otherHost = SshKeys.generate().getPublic();
            assertThatThrownBy(() -> connector.connect(new SshConnector.Target("t", () -> sshd, "root", SshKeys.generate(), otherHost, null),
                    Duration.ofSeconds(30))).isInstanceOf(KilnException.class).hasMessageContaining(SshKeys.fingerprint(otherHost));
            // The right host key, a client key the guest does not know: refused, saying so.
            var hostKey = vm.ssh().hostKey();
            assertThatThrownBy(() -> connector.connect(new SshConnector.Target("t", () -> sshd, "root", SshKeys.generate(), hostKey, null),
                    Duration.ofSeconds(30))).isInstanceOf(KilnException.class).hasMessageContaining("refused");
        }
    }

    @Test
    void sshReachesTheGuestDirectlyOnATap() {
        org.junit.jupiter.api.Assumptions.assumeTrue("root".equals(System.getProperty("user.name")) && Files.exists(Path.of("/dev/net/tun")),
                "a tap device needs root and /dev/net/tun");
        String tap = "kilnssh" + ProcessHandle.current().pid() % 100000, mac = "52:54:00:6b:69:6c";
        ip("tuntap", "add", tap, "mode", "tap");
        try {
            ip("addr", "add", "10.231.0.1/24", "dev", tap);
            ip("link", "set", tap, "up");
            // The guest's address on the tap, set by its own systemd-networkd (cloud-init writes the unit, named to come
            // before cloud-init's own fallback, 10-cloud-init-*.network).
            CloudInit config = CloudInit.builder()
                    .writeFile("/etc/systemd/network/05-kiln-tap.network", "[Match]\nMACAddress=" + mac + "\n[Network]\nAddress=10.231.0.2/24\n", "0644")
                    .runcmd("systemctl restart systemd-networkd") // networkctl would need D-Bus, which the image lacks
                    .build();
            try (QemuMachine vm = cloudGuest().tap(tap, mac).sshAt(new InetSocketAddress("10.231.0.2", 22)).cloudInit(config).start()) {
                assertThat(vm.commandLine()).noneMatch(a -> a.contains("hostfwd"));
                assertThat(vm.ssh().address()).isEqualTo(new InetSocketAddress("10.231.0.2", 22));
                assertThat(vm.guest().succeed("ip -4 -o addr show to 10.231.0.0/24")).contains("10.231.0.2/24");
            }
        } finally {
            ip("link", "del", tap);
        }
        assertThat(Path.of("/sys/class/net", tap)).doesNotExist();
    }

    private static void ip(String... args) {
        java.util.List<String> cmd = new java.util.ArrayList<>(java.util.List.of("ip"));
        cmd.addAll(java.util.List.of(args));
        var r = dev.kiln.support.HostCommand.run(cmd, null, Duration.ofSeconds(30), "ip " + String.join(" ", args));
        assertThat(r.ok()).as(r.complaint()).isTrue();
    }

    @Test
    void aCloudInitThatFailsFailsTheStartWithItsError() {
        CloudInit broken = CloudInit.builder().runcmd("echo kiln-runcmd-broke >&2; exit 3").build();
        assertThatThrownBy(() -> cloudGuest().cloudInit(broken).start()).isInstanceOf(LaunchException.class)
                .hasMessageContaining("cloud-init did not succeed").hasMessageContaining("kiln-runcmd-broke");
    }

    @Test
    void aDiskThatDoesNotBootFailsAtOnceWithTheFirmwaresWords() throws IOException {
        Path empty = dir.resolve("empty.raw");
        try (RandomAccessFile f = new RandomAccessFile(empty.toFile(), "rw")) {
            f.setLength(64L << 20);
        }
        GuestImage notBootable = GuestImage.bootableDisk(empty, "an empty disk");
        assertThatThrownBy(() -> QemuMachine.builder().image(notBootable).cloudInit(CloudInit.defaults()).readyTimeout(BOOT).start())
                .isInstanceOf(LaunchException.class).hasMessageContaining("the firmware found nothing to boot on an empty disk")
                .hasMessageContaining("No bootable device.");
        assertThatThrownBy(() -> QemuMachine.builder().image(notBootable).firmware(Firmware.UEFI).cloudInit(CloudInit.defaults())
                .readyTimeout(BOOT).start())
                .isInstanceOf(LaunchException.class).hasMessageContaining("the firmware found nothing to boot on an empty disk")
                .satisfies(e -> assertThat(e.getMessage()).containsAnyOf("BdsDxe: failed to load Boot", "UEFI Interactive Shell"));
    }
}

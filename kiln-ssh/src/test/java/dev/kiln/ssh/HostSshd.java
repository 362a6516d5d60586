package dev.kiln.ssh;

import dev.kiln.vmm.spi.SshConnector;
import org.apache.sshd.common.config.keys.PublicKeyEntry;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.GeneralSecurityException;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.spec.ECGenParameterSpec;
import java.time.Duration;
import java.util.Base64;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The host's own OpenSSH server, a private instance on a free port of 127.0.0.1 with a host key and an authorized
 * client key made for it (JDK EC P-256 keys), standing in for a guest's sshd: the "guest" is this machine.
 */
final class HostSshd implements AutoCloseable {
    static final Path SSHD = Path.of("/usr/sbin/sshd");

    final KeyPair hostKey = ecKeyPair(), clientKey = ecKeyPair();
    final String user = System.getProperty("user.name");
    final Path dir;
    final Path config;
    int port;
    private Process process;
    private final StringBuffer log = new StringBuffer();

    HostSshd(Path dir) throws IOException, InterruptedException {
        this.dir = dir;
        Path hostKeyFile = dir.resolve("host_key");
        Files.writeString(hostKeyFile, "-----BEGIN PRIVATE KEY-----\n"
                + Base64.getMimeEncoder(64, new byte[] {'\n'}).encodeToString(hostKey.getPrivate().getEncoded())
                + "\n-----END PRIVATE KEY-----\n");
        Files.setPosixFilePermissions(hostKeyFile, PosixFilePermissions.fromString("rw-------")); // else sshd ignores it
        Path authorized = dir.resolve("authorized_keys");
        Files.writeString(authorized, PublicKeyEntry.toString(clientKey.getPublic()) + "\n");
        Files.createDirectories(Path.of("/run/sshd")); // sshd's privilege separation directory
        this.config = dir.resolve("sshd_config");
        // A free port is only free until sshd binds it: another process may take it first, and then another is tried.
        for (int attempt = 1; ; attempt++) {
            this.port = freePort();
            Files.write(config, List.of(
                    "ListenAddress 127.0.0.1:" + port,
                    "HostKey " + hostKeyFile,
                    "AuthorizedKeysFile " + authorized,
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "PidFile none",
                    "StrictModes no",
                    "AllowTcpForwarding yes",
                    "MaxSessions 10", // OpenSSH's default, which the tests of further connections rely on
                    "Subsystem sftp internal-sftp",
                    "LogLevel VERBOSE"));
            log.setLength(0);
            this.process = new ProcessBuilder(SSHD.toString(), "-D", "-e", "-f", config.toString()).redirectErrorStream(true).start();
            if (listening(process)) return;
            close();
            if (attempt == 5 || !log.toString().contains("Address already in use")) {
                throw new IllegalStateException("sshd did not start listening on port " + port + ":\n" + log);
            }
        }
    }

    /** Whether sshd says it listens within 20 s, its output going to the log. */
    private boolean listening(Process sshd) throws InterruptedException {
        CompletableFuture<Void> listening = new CompletableFuture<>();
        Thread.ofVirtual().name("sshd-log-" + port).start(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(sshd.getInputStream(), StandardCharsets.UTF_8))) {
                for (String line; (line = r.readLine()) != null; ) {
                    log.append(line).append('\n');
                    if (line.contains("Server listening on")) listening.complete(null);
                }
            } catch (IOException e) {
                // sshd is gone
            }
            listening.completeExceptionally(new IllegalStateException("sshd ended its output"));
        });
        try {
            listening.get(20, TimeUnit.SECONDS);
            return true;
        } catch (ExecutionException | TimeoutException e) {
            return false;
        }
    }

    InetSocketAddress address() {
        return new InetSocketAddress("127.0.0.1", port);
    }

    SshConnector.Target target() {
        return target(user, clientKey, hostKey);
    }

    SshConnector.Target target(String user, KeyPair clientKey, KeyPair hostKey) {
        return new SshConnector.Target("host-sshd", this::address, user, clientKey, hostKey.getPublic(), () -> "sshd log:\n" + log);
    }

    String log() { return log.toString(); }

    /**
     * Stops sshd and returns what of it, or of what ran under it, is still alive after 10 s: the sessions' sshd
     * processes and their commands end with their connections.
     */
    List<ProcessHandle> stop() throws InterruptedException {
        List<ProcessHandle> under = process.descendants().toList();
        close();
        for (ProcessHandle p : under) {
            try {
                p.onExit().get(10, TimeUnit.SECONDS);
            } catch (ExecutionException | TimeoutException e) {
                // still alive: reported below
            }
        }
        return under.stream().filter(ProcessHandle::isAlive).toList();
    }

    @Override
    public void close() {
        process.destroy();
        try {
            if (!process.waitFor(10, TimeUnit.SECONDS)) process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            process.destroyForcibly();
        }
    }

    static KeyPair ecKeyPair() {
        try {
            KeyPairGenerator g = KeyPairGenerator.getInstance("EC");
            g.initialize(new ECGenParameterSpec("secp256r1"));
            return g.generateKeyPair();
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException(e);
        }
    }

    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    /** How long to wait for anything in these tests. */
    static final Duration WAIT = Duration.ofSeconds(20);
}

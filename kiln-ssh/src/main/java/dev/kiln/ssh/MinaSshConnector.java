package dev.kiln.ssh;

import dev.kiln.KilnException;
import dev.kiln.SshChannel;
import dev.kiln.WaitTimeoutException;
import dev.kiln.support.Deadline;
import dev.kiln.vmm.spi.SshConnector;
import org.apache.sshd.client.SshClient;
import org.apache.sshd.client.auth.pubkey.UserAuthPublicKeyFactory;
import org.apache.sshd.client.config.hosts.HostConfigEntryResolver;
import org.apache.sshd.client.future.AuthFuture;
import org.apache.sshd.client.future.ConnectFuture;
import org.apache.sshd.client.session.ClientSession;
import org.apache.sshd.common.NamedFactory;
import org.apache.sshd.common.SshConstants;
import org.apache.sshd.common.SshException;
import org.apache.sshd.common.config.keys.KeyUtils;
import org.apache.sshd.common.digest.BuiltinDigests;
import org.apache.sshd.common.keyprovider.KeyIdentityProvider;
import org.apache.sshd.common.signature.Signature;
import org.apache.sshd.core.CoreModuleProperties;
import org.apache.sshd.server.forward.AcceptAllForwardingFilter;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.security.PublicKey;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * Opens {@link SshChannel}s with Apache MINA SSHD: public-key authentication only (no password, no agent, nothing
 * read from {@code ~/.ssh}), exactly one acceptable host key (no known_hosts). Each channel gets an {@link SshClient}
 * of its own, stopped with it, so that MINA's I/O threads live exactly as long as the channels that use them.
 */
public final class MinaSshConnector implements SshConnector {
    /** Longest single attempt: a connection a not-yet-booted guest's NAT accepted may never see a banner. */
    private static final Duration ATTEMPT_LIMIT = Duration.ofSeconds(15);
    private static final Duration FIRST_BACKOFF = Duration.ofMillis(50), MAX_BACKOFF = Duration.ofSeconds(1);

    /** For {@link java.util.ServiceLoader}. */
    public MinaSshConnector() {}

    @Override
    public Session connect(Target target, Duration timeout) {
        Deadline deadline = Deadline.after(timeout);
        HostKeyCheck hostKeys = new HostKeyCheck(target.hostKey());
        SshClient client = newClient(hostKeys);
        client.start();
        boolean connected = false;
        try {
            String lastError = "no attempt finished";
            Object address = "(no address yet)";
            for (Duration backoff = FIRST_BACKOFF; ; backoff = min(backoff.multipliedBy(2), MAX_BACKOFF)) {
                try {
                    InetSocketAddress at = target.address().get();
                    address = at;
                    ClientSession session = login(client, target, at, hostKeys, deadline);
                    connected = true;
                    MinaSshChannel.Login again = d -> login(client, target, at, hostKeys, d);
                    return new MinaSshChannel(client, again, session, target.machineId(), target.user(), target.hostKey(), at);
                } catch (KilnException e) {
                    throw e; // refused: trying again changes nothing
                } catch (IOException | RuntimeException e) {
                    // MINA's waits say an interrupt with InterruptedIOException (a socket timeout is one too, and retried)
                    if (e instanceof java.io.InterruptedIOException && !(e instanceof java.net.SocketTimeoutException)) {
                        Thread.currentThread().interrupt();
                        throw new KilnException("interrupted while connecting to " + target.machineId() + " over SSH", e);
                    }
                    lastError = describe(e);
                }
                if (deadline.remaining().compareTo(backoff) <= 0) break;
                try {
                    Thread.sleep(backoff);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new KilnException("interrupted while connecting to " + target.machineId() + " over SSH", e);
                }
            }
            String diagnostics = target.diagnostics().get();
            throw new WaitTimeoutException("sshd of " + target.machineId() + " at " + address + " to let " + target.user()
                    + " in", timeout, "last error: " + lastError
                    + (diagnostics == null || diagnostics.isBlank() ? "" : "\n" + diagnostics));
        } finally {
            if (!connected) stop(client, Deadline.after(Duration.ofSeconds(10)));
        }
    }

    /** One attempt: TCP, key exchange (the host key checked), then the client key. */
    private static ClientSession login(SshClient client, Target target, InetSocketAddress address, HostKeyCheck hostKeys,
                                       Deadline deadline) throws IOException {
        Duration limit = min(MinaSshChannel.left(deadline), ATTEMPT_LIMIT);
        ConnectFuture connecting = client.connect(target.user(), address);
        if (!connecting.await(limit)) {
            connecting.cancel();
            throw new IOException("no TCP connection within " + limit.toMillis() + " ms");
        }
        ClientSession session = connecting.verify().getSession();
        try {
            session.addPublicKeyIdentity(target.clientKey());
            AuthFuture auth = session.auth();
            if (!auth.await(min(MinaSshChannel.left(deadline), ATTEMPT_LIMIT))) throw new IOException("no banner or no answer to the key exchange");
            if (auth.isSuccess()) return session;
            Throwable failure = auth.getException();
            if (failure instanceof SshException e && e.getDisconnectCode() == SshConstants.SSH2_DISCONNECT_NO_MORE_AUTH_METHODS_AVAILABLE) {
                throw new KilnException("the guest " + target.machineId() + " at " + address + " refused the key "
                        + fingerprint(target.clientKey().getPublic()) + " for user " + target.user());
            }
            throw failure instanceof IOException io ? io : new IOException(failure);
        } catch (IOException | RuntimeException e) {
            session.close(true);
            PublicKey offered = hostKeys.refused();
            if (offered != null) {
                throw new KilnException("the SSH server of " + target.machineId() + " at " + address + " offered host key "
                        + fingerprint(offered) + ", but only " + fingerprint(target.hostKey()) + " is accepted");
            }
            throw e;
        }
    }

    private static SshClient newClient(HostKeyCheck hostKeys) {
        SshClient client = SshClient.setUpDefaultClient();
        client.setServerKeyVerifier(hostKeys);
        client.setHostConfigEntryResolver(HostConfigEntryResolver.EMPTY); // no ~/.ssh/config
        client.setKeyIdentityProvider(KeyIdentityProvider.EMPTY_KEYS_PROVIDER); // no ~/.ssh/id_*: the target's key only
        // Host key algorithms: only the expected key's, so that a guest with several host keys shows that one. Our own
        // key signs with any algorithm MINA has.
        List<NamedFactory<Signature>> all = new ArrayList<>(client.getSignatureFactories());
        List<String> types = KeyUtils.getAllEquivalentKeyTypes(KeyUtils.getKeyType(hostKeys.expected()));
        List<NamedFactory<Signature>> hostKeyAlgorithms = all.stream().filter(f -> types.contains(f.getName())).toList();
        if (hostKeyAlgorithms.isEmpty()) {
            throw new IllegalArgumentException("Apache MINA SSHD cannot check a host key of type "
                    + KeyUtils.getKeyType(hostKeys.expected()) + " (" + hostKeys.expected().getAlgorithm() + ")");
        }
        client.setSignatureFactories(hostKeyAlgorithms);
        client.setUserAuthFactories(List.of(new UserAuthPublicKeyFactory(all)));
        client.setForwardingFilter(AcceptAllForwardingFilter.INSTANCE); // for the connections of remote forwards
        CoreModuleProperties.IDLE_TIMEOUT.set(client, Duration.ZERO); // a channel may sit idle as long as its machine runs
        CoreModuleProperties.NIO_WORKERS.set(client, 2);
        // A write to a command's stdin waits for the command to read, as on a pipe: not MINA's 30 s, after which the
        // rest of the input would be dropped. The channel's end (the command's, a kill, close) ends the wait; closing
        // the handle's stdin from another thread waits for it too (MINA's stream is synchronized).
        CoreModuleProperties.WAIT_FOR_SPACE_TIMEOUT.set(client, Duration.ofDays(365));
        return client;
    }

    /** Stops the client and waits (until the deadline) for its threads, which MINA names after it, to end. */
    static void stop(SshClient client, Deadline deadline) {
        String prefix = "sshd-" + client.toString().replace(' ', '-') + "-";
        client.stop();
        for (Thread t : Thread.getAllStackTraces().keySet()) {
            if (!t.getName().startsWith(prefix)) continue;
            try {
                t.join(deadline.remaining());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    /** A key as {@code ssh-keygen -l} shows it: its SHA-256 fingerprint, and its type. */
    static String fingerprint(PublicKey key) {
        return KeyUtils.getFingerPrint(BuiltinDigests.sha256, key) + " (" + KeyUtils.getKeyType(key) + ")";
    }

    private static String describe(Throwable e) {
        StringBuilder s = new StringBuilder(e.toString());
        for (Throwable c = e.getCause(); c != null && c != c.getCause(); c = c.getCause()) s.append("; caused by ").append(c);
        return s.toString();
    }

    private static Duration min(Duration a, Duration b) {
        return a.compareTo(b) <= 0 ? a : b;
    }
}

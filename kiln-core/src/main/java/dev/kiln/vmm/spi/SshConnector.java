package dev.kiln.vmm.spi;

import dev.kiln.SshChannel;

import java.net.InetSocketAddress;
import java.security.KeyPair;
import java.security.PublicKey;
import java.time.Duration;
import java.util.Objects;
import java.util.function.Supplier;

/**
 * How the core opens an {@link SshChannel}; {@code kiln-ssh} provides it (a {@link java.util.ServiceLoader} service), so
 * the core needs no SSH library of its own.
 */
public interface SshConnector {
    /**
     * Connects to {@code target}, checks its host key and authenticates with its key, retrying while the guest does not
     * answer yet (connection refused or reset, no banner) until {@code timeout}, then fails with a
     * {@link dev.kiln.WaitTimeoutException} naming the last error. A host key other than the expected one, or a key the
     * guest refuses, fails at once with a message saying which.
     */
    Session connect(Target target, Duration timeout);

    /** A machine's session: {@link #close()} for a session on its own, {@link #abort()} for one whose machine is going. */
    interface Session extends SshChannel {
        /**
         * Ends the session's connections, killing nothing and waiting for no answer from the guest (only for the SSH
         * library's threads to end): the machine is going away with its commands, and may be gone already (a guest on
         * a tap sends no reset). A wait on the session ends with it. Idempotent, and fine after close.
         */
        void abort();
    }

    /**
     * @param machineId  for messages and thread names
     * @param address    where sshd listens, asked again on each attempt
     * @param user       the user to log in as
     * @param clientKey  the key to authenticate with
     * @param hostKey    the only host key to accept
     * @param diagnostics what to add to a failure's message (the console's tail, say)
     */
    record Target(String machineId, Supplier<InetSocketAddress> address, String user, KeyPair clientKey, PublicKey hostKey,
                  Supplier<String> diagnostics) {
        public Target {
            Objects.requireNonNull(machineId, "machineId");
            Objects.requireNonNull(address, "address");
            Objects.requireNonNull(user, "user");
            Objects.requireNonNull(clientKey, "clientKey");
            Objects.requireNonNull(hostKey, "hostKey");
            diagnostics = diagnostics == null ? () -> "" : diagnostics;
        }
    }
}

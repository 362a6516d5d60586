package dev.kiln;

import java.security.KeyPair;
import java.security.PublicKey;
import java.util.Objects;

/**
 * How to log in to an image that already runs sshd and knows a key of yours (one not configured by Kiln's
 * {@link CloudInit}): the user, your key pair, and the guest's host key, the only one accepted.
 *
 * @param user      the user commands run as (root, or one with sudo without a password for Kiln's own steps)
 * @param clientKey the key pair to log in with
 * @param hostKey   the guest's host key
 * @param port      sshd's port in the guest
 */
public record SshAccess(String user, KeyPair clientKey, PublicKey hostKey, int port) {
    public SshAccess {
        if (user == null || user.isBlank()) throw new IllegalArgumentException("ssh: the user is empty");
        Objects.requireNonNull(clientKey, "ssh: clientKey");
        Objects.requireNonNull(hostKey, "ssh: hostKey");
        if (port < 1 || port > 65535) throw new IllegalArgumentException("ssh: port out of range: " + port);
    }

    public SshAccess(String user, KeyPair clientKey, PublicKey hostKey) {
        this(user, clientKey, hostKey, 22);
    }

    @Override
    public String toString() {
        return "SshAccess[" + user + "@:" + port + ", host key " + hostKey.getAlgorithm() + "]";
    }
}

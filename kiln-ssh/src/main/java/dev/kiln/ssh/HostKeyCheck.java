package dev.kiln.ssh;

import org.apache.sshd.client.keyverifier.ServerKeyVerifier;
import org.apache.sshd.client.session.ClientSession;
import org.apache.sshd.common.config.keys.KeyUtils;

import java.net.SocketAddress;
import java.security.PublicKey;

/** Accepts exactly one host key, and remembers the key it refused for the error message. */
final class HostKeyCheck implements ServerKeyVerifier {
    private final PublicKey expected;
    private volatile PublicKey refused;

    HostKeyCheck(PublicKey expected) {
        this.expected = expected;
    }

    PublicKey expected() { return expected; }

    /** The last key offered other than the expected one, or null. */
    PublicKey refused() { return refused; }

    @Override
    public boolean verifyServerKey(ClientSession session, SocketAddress remote, PublicKey offered) {
        if (KeyUtils.compareKeys(expected, offered)) return true;
        refused = offered;
        return false;
    }
}

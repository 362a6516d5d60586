package dev.kiln;

import java.net.InetSocketAddress;
import java.security.PublicKey;

/**
 * A guest reached over SSH: the {@link Guest} API (exec, process handles, SFTP copies) and port forwards, over
 * authenticated connections to the guest's sshd (a further one whenever sshd takes no more commands on those open).
 * Kiln opens it when the image has no guest agent, or when the spec asks for SSH ({@link SpecBuilder#ssh});
 * {@link Machine#ssh()} returns it. The host key is checked against the one Kiln baked in (through cloud-init) or the
 * one the spec names, never accepted blindly.
 */
public interface SshChannel extends Guest, AutoCloseable {
    /** The user commands run as. */
    String user();

    /** The guest's host key, as checked when the session was opened. */
    PublicKey hostKey();

    /** Where the session is connected to (a forwarded port on 127.0.0.1, or the guest's own address). */
    InetSocketAddress address();

    /**
     * Listens on a free port of 127.0.0.1 on the host and forwards each connection to {@code guestPort} on the guest's
     * loopback (ssh -L). Ends with {@link Forward#close()} or the session.
     */
    Forward forwardLocal(int guestPort);

    /**
     * Listens on {@code guestPort} of the guest's loopback and forwards each connection to {@code hostTarget}, dialled
     * from the host (ssh -R). Ends with {@link Forward#close()} or the session.
     */
    Forward forwardRemote(int guestPort, InetSocketAddress hostTarget);

    /**
     * Ends the session and its forwards; commands still running are killed first. The machine's own session
     * ({@link Machine#ssh()}) ignores this: it ends with the machine.
     */
    @Override
    void close();

    /** A port forward: where it listens. */
    interface Forward extends AutoCloseable {
        /** The address it listens on: a host address for {@link #forwardLocal}, the guest's for {@link #forwardRemote}. */
        InetSocketAddress listening();

        @Override
        void close();
    }
}

/**
 * Kiln's SSH guest channel on Apache MINA SSHD: it provides the core's {@code SshConnector}; users reach it through
 * {@code dev.kiln.SshChannel} only, so nothing is exported.
 */
@SuppressWarnings("requires-automatic") // MINA SSHD ships automatic modules only
module dev.kiln.ssh {
    requires transitive dev.kiln.core;
    requires org.apache.sshd.osgi;
    requires org.apache.sshd.sftp;
    requires org.slf4j;

    provides dev.kiln.vmm.spi.SshConnector with dev.kiln.ssh.MinaSshConnector;
}

/**
 * Kiln's core: the common machine API ({@code dev.kiln}), the guest agent client ({@code dev.kiln.agent}), the one
 * machine lifecycle ({@code dev.kiln.vmm}); the driver SPI, the OS layer and the support code are for Kiln's own
 * modules only.
 */
@SuppressWarnings("module") // its friends compile after it: javac cannot see them yet
module dev.kiln.core {
    requires transitive com.fasterxml.jackson.databind; // the agent client's raw calls speak JSON
    requires org.slf4j;
    requires java.net.http;

    exports dev.kiln;
    exports dev.kiln.agent;
    exports dev.kiln.vmm;
    exports dev.kiln.vmm.spi to dev.kiln.qemu, dev.kiln.firecracker, dev.kiln.ssh;
    exports dev.kiln.os to dev.kiln.image, dev.kiln.qemu, dev.kiln.firecracker, dev.kiln.junit, dev.kiln.cli;
    exports dev.kiln.support to dev.kiln.image, dev.kiln.qemu, dev.kiln.firecracker, dev.kiln.junit, dev.kiln.cli, dev.kiln.ssh;

    uses dev.kiln.vmm.spi.MachineFactory;
    uses dev.kiln.vmm.spi.SshConnector;
}

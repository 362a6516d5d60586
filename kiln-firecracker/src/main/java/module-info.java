/** Firecracker as a Kiln backend: {@code FirecrackerMachine}, its typed API client, the jailer, host networking. */
module dev.kiln.firecracker {
    requires transitive dev.kiln.core;
    requires dev.kiln.image;
    requires org.eclipse.jetty.client;
    requires org.slf4j;

    exports dev.kiln.firecracker;
    exports dev.kiln.firecracker.api;
    exports dev.kiln.firecracker.api.model;
    exports dev.kiln.firecracker.net;
    opens dev.kiln.firecracker.api.model to com.fasterxml.jackson.databind; // records read and written by Jackson

    provides dev.kiln.vmm.spi.MachineFactory with dev.kiln.firecracker.internal.FirecrackerMachineFactory;
}

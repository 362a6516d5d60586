/** QEMU as a Kiln backend: {@code QemuMachine}, QMP, and networks of machines ({@code dev.kiln.qemu.net}). */
module dev.kiln.qemu {
    requires transitive dev.kiln.core;
    requires dev.kiln.image;
    requires org.slf4j;

    exports dev.kiln.qemu;
    exports dev.kiln.qemu.net;

    provides dev.kiln.vmm.spi.MachineFactory with dev.kiln.qemu.internal.QemuMachineFactory;
}

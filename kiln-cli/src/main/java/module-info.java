/** The {@code kiln} command. */
module dev.kiln.cli {
    requires dev.kiln.qemu;
    requires dev.kiln.firecracker;
    requires dev.kiln.image;
    requires info.picocli;
    requires jdk.unsupported; // sun.misc.Signal: kiln shell follows the terminal's size (SIGWINCH)

    opens dev.kiln.cli to info.picocli; // picocli sets the commands' option fields
}

/** The JUnit Jupiter extension: {@code @KilnTest} classes with {@code @Vm} machines. */
module dev.kiln.junit {
    requires transitive dev.kiln.core;
    requires transitive dev.kiln.qemu;
    requires transitive dev.kiln.firecracker;
    requires dev.kiln.image;
    requires transitive org.junit.jupiter.api;
    requires org.junit.platform.commons;
    requires org.opentest4j;
    requires org.slf4j;

    exports dev.kiln.junit;
}

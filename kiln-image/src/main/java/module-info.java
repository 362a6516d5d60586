/** Kiln's default guest image, built from Debian's packages, and kernel tools (vmlinux extraction). */
module dev.kiln.image {
    requires transitive dev.kiln.core;
    requires org.apache.commons.compress;
    requires org.tukaani.xz; // commons-compress decodes xz with it

    exports dev.kiln.image;
}

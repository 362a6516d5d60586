package dev.kiln.vmm.spi;

import dev.kiln.Drive;

import java.nio.file.Path;

/**
 * A drive made ready for the VMM: the file to attach (the overlay or scratch file Kiln made, or the user's file),
 * checked and locked for the machine's life.
 *
 * @param id       the guest's name for it (QEMU's serial, Firecracker's drive id)
 * @param file     the file the VMM opens
 * @param format   its format
 * @param readOnly whether the guest may not write it
 */
public record AttachedDrive(String id, Path file, Drive.Format format, boolean readOnly) {}

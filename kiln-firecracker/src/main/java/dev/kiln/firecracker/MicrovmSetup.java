package dev.kiln.firecracker;

import dev.kiln.firecracker.api.FirecrackerApi;
import dev.kiln.firecracker.api.model.BootSource;
import dev.kiln.firecracker.api.model.CpuTemplate;
import dev.kiln.firecracker.api.model.Drive;
import dev.kiln.firecracker.api.model.MachineConfiguration;
import dev.kiln.firecracker.api.model.NetworkInterface;
import dev.kiln.firecracker.api.model.PartialDrive;
import dev.kiln.firecracker.api.model.RateLimiter;
import dev.kiln.firecracker.api.model.SnapshotCreateParams;
import dev.kiln.firecracker.api.model.SnapshotLoadParams;
import dev.kiln.firecracker.api.model.Vm;
import dev.kiln.firecracker.api.model.Vsock;

import java.nio.file.Path;
import java.util.List;
import java.util.Objects;

/**
 * Configuration shortcuts over the typed API: machine size and boot source, drives, network interfaces,
 * vsock, and the snapshot flows. Host files are turned into the paths Firecracker sees by a
 * {@link ResourceMapper} (identity when direct, {@link Jail#put} when jailed).
 */
public final class MicrovmSetup {
    /** Turns a host file into the path Firecracker is given for it. */
    @FunctionalInterface
    public interface ResourceMapper {
        String map(Path hostFile, boolean writable);

        static ResourceMapper direct() {
            return (file, writable) -> file.toAbsolutePath().toString();
        }
    }

    /**
     * What {@code basic_config} sets: vCPUs, memory, SMT, dirty page tracking, CPU template; the kernel, its
     * boot arguments and initrd; and a root drive. Null fields are left to Firecracker.
     */
    public record BasicConfig(int vcpuCount, int memSizeMib, Boolean smt, Boolean trackDirtyPages, CpuTemplate cpuTemplate,
                              Path kernel, String bootArgs, Path initrd, Path rootfs, boolean rootfsReadOnly,
                              Drive.IoEngine rootfsIoEngine) {
        public BasicConfig {
            Objects.requireNonNull(kernel, "kernel");
            if (vcpuCount < 1 || vcpuCount > 32) throw new IllegalArgumentException("vCPUs must be 1..32, got " + vcpuCount);
            if (memSizeMib < 1) throw new IllegalArgumentException("memory must be positive, got " + memSizeMib + " MiB");
        }

        /** Defaults: 2 vCPUs, 256 MiB, the kernel and its arguments, no root drive. */
        public static BasicConfig of(Path kernel, String bootArgs) {
            return new BasicConfig(2, 256, null, null, null, kernel, bootArgs, null, null, false, null);
        }

        public BasicConfig withSize(int vcpus, int memMib) { return new BasicConfig(vcpus, memMib, smt, trackDirtyPages, cpuTemplate, kernel, bootArgs, initrd, rootfs, rootfsReadOnly, rootfsIoEngine); }

        public BasicConfig withSmt(Boolean v) { return new BasicConfig(vcpuCount, memSizeMib, v, trackDirtyPages, cpuTemplate, kernel, bootArgs, initrd, rootfs, rootfsReadOnly, rootfsIoEngine); }

        public BasicConfig withTrackDirtyPages(Boolean v) { return new BasicConfig(vcpuCount, memSizeMib, smt, v, cpuTemplate, kernel, bootArgs, initrd, rootfs, rootfsReadOnly, rootfsIoEngine); }

        public BasicConfig withCpuTemplate(CpuTemplate v) { return new BasicConfig(vcpuCount, memSizeMib, smt, trackDirtyPages, v, kernel, bootArgs, initrd, rootfs, rootfsReadOnly, rootfsIoEngine); }

        public BasicConfig withInitrd(Path v) { return new BasicConfig(vcpuCount, memSizeMib, smt, trackDirtyPages, cpuTemplate, kernel, bootArgs, v, rootfs, rootfsReadOnly, rootfsIoEngine); }

        public BasicConfig withRootfs(Path v, boolean readOnly, Drive.IoEngine ioEngine) { return new BasicConfig(vcpuCount, memSizeMib, smt, trackDirtyPages, cpuTemplate, kernel, bootArgs, initrd, v, readOnly, ioEngine); }
    }

    private final FirecrackerApi api;
    private final ResourceMapper resources;

    public MicrovmSetup(FirecrackerApi api, ResourceMapper resources) {
        this.api = api;
        this.resources = resources;
    }

    public void basicConfig(BasicConfig c) {
        api.putMachineConfiguration(new MachineConfiguration(c.cpuTemplate(), c.smt(), c.memSizeMib(), c.trackDirtyPages(),
                c.vcpuCount(), null));
        api.putGuestBootSource(new BootSource(resources.map(c.kernel(), false), c.bootArgs(),
                c.initrd() == null ? null : resources.map(c.initrd(), false)));
        if (c.rootfs() != null) {
            api.putGuestDriveByID(Drive.of("rootfs", resources.map(c.rootfs(), !c.rootfsReadOnly()), true, c.rootfsReadOnly())
                    .withIoEngine(c.rootfsIoEngine()));
        }
    }

    /**
     * Adds a block device backed by {@code file}; {@code template} gives the drive id and the options
     * (root, read-only, partuuid, cache type, io engine, rate limiter), its path is replaced.
     */
    public void addDrive(Drive template, Path file) {
        boolean readOnly = Boolean.TRUE.equals(template.isReadOnly());
        api.putGuestDriveByID(template.withPathOnHost(resources.map(file, !readOnly)));
    }

    /** Points drive {@code driveId} at another file (after boot). */
    public void patchDrive(String driveId, Path file, RateLimiter rateLimiter) {
        api.patchGuestDriveByID(new PartialDrive(driveId, file == null ? null : resources.map(file, true), rateLimiter));
    }

    /** Adds a virtio-net device on host tap {@code tapName}. */
    public void addNetworkInterface(String ifaceId, String tapName, String guestMac, RateLimiter rx, RateLimiter tx) {
        api.putGuestNetworkInterfaceByID(NetworkInterface.of(ifaceId, tapName, guestMac).withRateLimiters(rx, tx));
    }

    /** Adds the vsock device; {@code udsPath} is where Firecracker listens (created by Firecracker, in the jail when jailed). */
    public void addVsock(int guestCid, String udsPath) {
        api.putGuestVsock(Vsock.of(guestCid, udsPath));
    }

    /** Pauses the VM, then writes a full or diff snapshot. */
    public void pauseToSnapshot(String memFilePath, String snapshotPath, boolean diff) {
        api.patchVm(new Vm(Vm.State.Paused));
        api.createSnapshot(new SnapshotCreateParams(memFilePath, snapshotPath,
                diff ? SnapshotCreateParams.SnapshotType.Diff : SnapshotCreateParams.SnapshotType.Full));
    }

    /**
     * Puts memory, state and the disks the snapshot refers to
     * where Firecracker can see them (an initrd-only guest has none), loads it and resumes the VM.
     */
    public void restoreFromSnapshot(Path mem, Path vmState, List<Path> disks, boolean trackDirtyPages) {
        String jailedMem = resources.map(mem, false);
        String jailedState = resources.map(vmState, false);
        for (Path disk : disks) resources.map(disk, true);
        api.loadSnapshot(SnapshotLoadParams.fromFiles(jailedState, jailedMem, true).withTrackDirtyPages(trackDirtyPages ? true : null));
    }
}

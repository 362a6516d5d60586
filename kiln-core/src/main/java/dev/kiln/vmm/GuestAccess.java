package dev.kiln.vmm;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.CloudInit;
import dev.kiln.Drive;
import dev.kiln.ExecRequest;
import dev.kiln.ExecResult;
import dev.kiln.Guest;
import dev.kiln.GuestImage;
import dev.kiln.KilnException;
import dev.kiln.MachineSpec;
import dev.kiln.Share;
import dev.kiln.Text;
import dev.kiln.disk.GuestVolumes;
import dev.kiln.vmm.spi.AttachedDrive;
import dev.kiln.vmm.spi.SshConnector;

import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyPair;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.ServiceLoader;
import java.util.UUID;
import java.util.function.Supplier;

import static dev.kiln.support.ShellWords.quote;

/**
 * How a machine is reached and set up beyond its VMM: the cloud-init volume and the SSH keys in it, the SSH channel for
 * images without an agent, the wait for cloud-init, and the mounts of the spec's shares.
 */
final class GuestAccess {
    /** The drive ids of the cidata volume and of shares made into disks. */
    static final String CIDATA_DRIVE = "cidata", SHARE_DRIVE = "share";

    private final MachineSpec spec;
    private final String id;
    private final KeyPair clientKey, hostKey;

    GuestAccess(MachineSpec spec, String id) {
        this.spec = spec;
        this.id = id;
        boolean keys = spec.cloudInit().isPresent();
        this.clientKey = keys ? SshKeys.generate() : null;
        this.hostKey = keys ? SshKeys.generate() : null;
    }

    /** Whether {@code guest()} goes over SSH for this image. */
    boolean viaSsh(GuestImage image) {
        return switch (spec.guestChannel()) {
            case SSH -> true;
            case AGENT -> false;
            case AUTO -> image != null && !image.agent() && spec.sshPossible();
        };
    }

    /** Fails before anything starts when a share's directory is missing. */
    void checkShares() {
        for (Share s : spec.shares()) {
            if (!Files.isDirectory(s.hostDir())) {
                throw new KilnException("shares: " + s.hostDir() + " is not a directory on this host" + (Files.exists(s.hostDir())
                        ? "" : " (it does not exist)") + "; it was to be the guest's " + s.guestPath());
            }
        }
    }

    /**
     * The drives Kiln adds to the spec's, made in {@code workDir}: the cloud-init volume, and each share as an ext4
     * disk when the VMM has no shared folders ({@code sharesAsDisks}).
     */
    List<Drive> extraDrives(Path workDir, boolean sharesAsDisks) {
        List<Drive> out = new ArrayList<>();
        spec.cloudInit().ifPresent(c -> {
            Path cidata = workDir.resolve("cidata.img");
            GuestVolumes.cloudInitVolume(cidata, cidataFiles(c));
            out.add(Drive.file(cidata).format(Drive.Format.RAW).readOnly().id(CIDATA_DRIVE));
        });
        if (sharesAsDisks) {
            for (int i = 0; i < spec.shares().size(); i++) {
                Path disk = workDir.resolve("share" + i + ".ext4");
                GuestVolumes.directoryDisk(spec.shares().get(i).hostDir(), disk);
                out.add(Drive.file(disk).format(Drive.Format.RAW).readOnly().id(SHARE_DRIVE + i));
            }
        }
        return out;
    }

    /** The cidata volume's files: meta-data, user-data ({@code #cloud-config} as JSON, which YAML reads), network-config. */
    private Map<String, String> cidataFiles(CloudInit c) {
        ObjectMapper json = new ObjectMapper();
        String hostname = c.hostname().orElse(id.length() <= 63 ? id : id.substring(0, 63));
        ObjectNode meta = json.createObjectNode().put("instance-id", id + "-" + UUID.randomUUID()).put("local-hostname", hostname);
        ObjectNode user = json.createObjectNode();
        // locale: false keeps the image's own; cloud-init's default (en_US.UTF-8) fails where that locale is not generated.
        user.put("hostname", hostname).put("preserve_hostname", false).put("locale", false);
        String clientLine = SshKeys.openSsh(clientKey.getPublic(), "kiln@" + id);
        // Root logs in with Kiln's key; the image's own host keys are replaced by the one Kiln pins.
        user.put("disable_root", false).put("ssh_pwauth", false).put("ssh_deletekeys", true);
        user.putArray("ssh_genkeytypes");
        user.putArray("ssh_authorized_keys").add(clientLine);
        user.putObject("ssh_keys").put("ecdsa_private", SshKeys.pem(hostKey.getPrivate()))
                .put("ecdsa_public", SshKeys.openSsh(hostKey.getPublic(), null));
        ArrayNode users = user.putArray("users");
        for (String u : c.users()) {
            users.addObject().put("name", u).put("shell", "/bin/sh").put("sudo", "ALL=(ALL) NOPASSWD:ALL").put("lock_passwd", true)
                    .putArray("ssh_authorized_keys").add(clientLine);
        }
        if (!c.files().isEmpty()) {
            ArrayNode files = user.putArray("write_files");
            for (CloudInit.WriteFile f : c.files()) {
                ObjectNode n = files.addObject().put("path", f.path()).put("content", f.content());
                if (f.permissions() != null) n.put("permissions", f.permissions());
            }
        }
        if (!c.runcmd().isEmpty()) {
            ArrayNode cmds = user.putArray("runcmd");
            c.runcmd().forEach(cmds::add);
        }
        Map<String, String> files = new LinkedHashMap<>();
        try {
            files.put("meta-data", json.writerWithDefaultPrettyPrinter().writeValueAsString(meta) + "\n");
            files.put("user-data", "#cloud-config\n" + json.writerWithDefaultPrettyPrinter().writeValueAsString(user) + "\n");
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
        c.networkConfig().ifPresent(n -> files.put("network-config", n));
        return files;
    }

    /** Opens the SSH channel to the guest at {@code address}, retrying until it answers or {@code timeout} passes. */
    SshConnector.Session connect(Supplier<InetSocketAddress> address, Duration timeout, Supplier<String> diagnostics) {
        SshConnector connector = ServiceLoader.load(SshConnector.class, GuestAccess.class.getClassLoader()).findFirst()
                .orElseThrow(() -> new KilnException("machine " + id + " is reached over SSH, and no SSH connector is on the"
                        + " class path: add the dependency dev.kiln:kiln-ssh"));
        SshConnector.Target target = spec.sshAccess()
                .map(a -> new SshConnector.Target(id, address, a.user(), a.clientKey(), a.hostKey(), diagnostics))
                .orElseGet(() -> new SshConnector.Target(id, address, "root", clientKey, hostKey.getPublic(), diagnostics));
        return connector.connect(target, timeout);
    }

    /** The guest port sshd listens on. */
    int sshPort() {
        return spec.sshAccess().map(a -> a.port()).orElse(22);
    }

    /** Waits for cloud-init to finish its boot, and fails with what it reports when it did not succeed. */
    void awaitCloudInit(Guest guest, Duration timeout) {
        if (spec.cloudInit().map(c -> !c.awaitDone()).orElse(true)) return;
        ExecResult r = guest.exec(ExecRequest.of("cloud-init", "status", "--wait", "--long").timeout(timeout).build());
        if (r.exitCode() == 0) return;
        if (r.exitCode() == 2) { // cloud-init 23.4 and later: done, with recoverable errors (deprecated keys, say)
            org.slf4j.LoggerFactory.getLogger(GuestAccess.class).warn("{}: cloud-init finished with recoverable errors:\n{}", id,
                    (r.stdoutText() + r.stderrText()).strip());
            return;
        }
        String detail = guest.exec(ExecRequest.of("sh", "-c", "tail -n 25 /var/log/cloud-init-output.log 2>&1; "
                + "grep -h -E 'WARNING|ERROR|Traceback' /var/log/cloud-init.log 2>/dev/null | tail -n 15").timeout(Duration.ofSeconds(30)).build())
                .stdoutText();
        throw new KilnException("cloud-init did not succeed in machine " + id + " (cloud-init status exit " + r.exitCode() + "):\n  "
                + (r.stdoutText() + r.stderrText()).strip().replace("\n", "\n  ") + "\n  its log:\n    "
                + Text.tail(detail, 4000).strip().replace("\n", "\n    "));
    }

    /** Mounts each share where the spec says (as root: through sudo when SSH logs in as another user). */
    void mountShares(Guest guest, List<AttachedDrive> attached, String user, Duration timeout) {
        List<Share> shares = spec.shares();
        for (int i = 0; i < shares.size(); i++) {
            Share s = shares.get(i);
            String target = quote(s.guestPath());
            String mount = switch (s.transport()) {
                case NINE_P -> "mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144" + (s.readOnly() ? ",ro " : " ") + Share.tag(i);
                case VIRTIOFS, AUTO -> shareDevice(attached, i)
                        .map(dev -> "mount -t ext4 -o ro " + dev)
                        .orElse("mount -t virtiofs" + (s.readOnly() ? " -o ro " : " ") + Share.tag(i));
            };
            String cmd = "mkdir -p " + target + " && " + mount + " " + target;
            List<String> argv = new ArrayList<>(List.of("sh", "-c", cmd));
            if (user != null && !user.equals("root")) argv.addAll(0, List.of("sudo", "-n"));
            ExecResult r = guest.exec(ExecRequest.of(argv).timeout(timeout).build());
            if (!r.succeeded()) {
                throw new KilnException("cannot mount the share " + s.hostDir() + " at " + s.guestPath() + " in machine " + id
                        + " (" + cmd + ", exit " + r.exitCode() + "): " + (r.stderrText() + r.stdoutText()).strip());
            }
        }
    }

    /** The guest's device of share {@code index} when it was made a disk: drives appear as vda, vdb… in order. */
    private static java.util.Optional<String> shareDevice(List<AttachedDrive> attached, int index) {
        for (int i = 0; i < attached.size() && i < 26; i++) {
            if (attached.get(i).id().equals(SHARE_DRIVE + index)) return java.util.Optional.of("/dev/vd" + (char) ('a' + i));
        }
        return java.util.Optional.empty();
    }
}

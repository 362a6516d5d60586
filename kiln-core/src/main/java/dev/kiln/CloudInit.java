package dev.kiln;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Optional;
import java.util.regex.Pattern;

/**
 * What cloud-init is to do in a guest booted with this spec: Kiln writes it as a NoCloud {@code cidata} volume, with
 * {@code meta-data}, {@code user-data} and, when given, {@code network-config}, and attaches it as a read-only
 * drive. Into it Kiln puts an SSH key pair it makes for the machine (root and every user listed may log in with it)
 * and the guest's host key, which it pins: the {@link SshChannel} accepts no other. By default {@code start()} waits
 * until cloud-init has finished ({@code cloud-init status --wait}) and fails with its errors when it did not succeed.
 *
 * <pre>{@code
 * CloudInit.builder().hostname("web1").user("app")
 *         .writeFile("/etc/app.conf", "port=8080\n", "0644")
 *         .runcmd("systemctl restart app")
 *         .build()
 * }</pre>
 */
public final class CloudInit {
    private static final Pattern HOSTNAME = Pattern.compile("[A-Za-z0-9][A-Za-z0-9-]{0,62}");
    private static final Pattern USER = Pattern.compile("[a-z_][a-z0-9_-]{0,31}");
    private static final Pattern MODE = Pattern.compile("0?[0-7]{3,4}");

    /** A file cloud-init writes ({@code write_files}). */
    public record WriteFile(String path, String content, String permissions) {
        public WriteFile {
            if (path == null || !path.startsWith("/")) throw new IllegalArgumentException("cloudInit: a file's path must be absolute, got '" + path + "'");
            Objects.requireNonNull(content, "cloudInit: content");
            if (permissions != null && !MODE.matcher(permissions).matches()) {
                throw new IllegalArgumentException("cloudInit: permissions must be octal like 0644, got '" + permissions + "'");
            }
        }
    }

    private final String hostname;
    private final List<String> users;
    private final List<WriteFile> files;
    private final List<String> runcmd;
    private final String networkConfig;
    private final boolean awaitDone;

    private CloudInit(Builder b) {
        this.hostname = b.hostname;
        this.users = List.copyOf(b.users);
        this.files = List.copyOf(b.files);
        this.runcmd = List.copyOf(b.runcmd);
        this.networkConfig = b.networkConfig;
        this.awaitDone = b.awaitDone;
    }

    public static Builder builder() {
        return new Builder();
    }

    /** Nothing but what Kiln adds: keys, and the machine's id as hostname. */
    public static CloudInit defaults() {
        return builder().build();
    }

    /** The hostname; empty: the machine's id. */
    public Optional<String> hostname() { return Optional.ofNullable(hostname); }

    /** Users made besides root, each with Kiln's key and sudo without a password. */
    public List<String> users() { return users; }

    public List<WriteFile> files() { return files; }

    /** Shell commands run once, at the end of the first boot. */
    public List<String> runcmd() { return runcmd; }

    /** The {@code network-config} (version 2 YAML), if given; else cloud-init's own (DHCP on the first NIC). */
    public Optional<String> networkConfig() { return Optional.ofNullable(networkConfig); }

    /** Whether {@code start()} waits for cloud-init to finish (the default). */
    public boolean awaitDone() { return awaitDone; }

    @Override
    public String toString() {
        return "CloudInit[" + (hostname != null ? "hostname " + hostname + ", " : "") + "users " + users + ", "
                + files.size() + " file(s), " + runcmd.size() + " command(s)" + (networkConfig != null ? ", network-config" : "") + "]";
    }

    public static final class Builder {
        private String hostname;
        private final List<String> users = new ArrayList<>();
        private final List<WriteFile> files = new ArrayList<>();
        private final List<String> runcmd = new ArrayList<>();
        private String networkConfig;
        private boolean awaitDone = true;

        private Builder() {}

        public Builder hostname(String name) {
            if (name == null || !HOSTNAME.matcher(name).matches()) {
                throw new IllegalArgumentException("cloudInit: hostname must be 1 to 63 letters, digits and '-', got '" + name + "'");
            }
            this.hostname = name;
            return this;
        }

        /** A user besides root, who may log in with Kiln's key and use sudo without a password. */
        public Builder user(String name) {
            if (name == null || !USER.matcher(name).matches() || name.equals("root")) {
                throw new IllegalArgumentException("cloudInit: '" + name + "' is not a user name cloud-init can make");
            }
            users.add(name);
            return this;
        }

        /** A file to write, with its permissions (octal, e.g. {@code 0644}; null: cloud-init's default). */
        public Builder writeFile(String path, String content, String permissions) {
            files.add(new WriteFile(path, content, permissions));
            return this;
        }

        /** A shell command run once at the end of the first boot ({@code runcmd}), in order. */
        public Builder runcmd(String shellCommand) {
            if (shellCommand == null || shellCommand.isBlank()) throw new IllegalArgumentException("cloudInit: runcmd is empty");
            runcmd.add(shellCommand);
            return this;
        }

        /** The {@code network-config} file of the cidata volume (version 2 YAML). */
        public Builder networkConfig(String yaml) {
            this.networkConfig = Objects.requireNonNull(yaml, "cloudInit: networkConfig");
            return this;
        }

        /** Whether {@code start()} waits for cloud-init to finish (default true). */
        public Builder awaitDone(boolean await) {
            this.awaitDone = await;
            return this;
        }

        public CloudInit build() {
            return new CloudInit(this);
        }
    }
}

package dev.kiln.firecracker.api;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kiln.KilnException;
import dev.kiln.MachineClosedException;
import dev.kiln.Text;
import dev.kiln.firecracker.api.model.ApiError;
import dev.kiln.firecracker.api.model.Balloon;
import dev.kiln.firecracker.api.model.BalloonHintingStatus;
import dev.kiln.firecracker.api.model.BalloonStartCmd;
import dev.kiln.firecracker.api.model.BalloonStats;
import dev.kiln.firecracker.api.model.BalloonStatsUpdate;
import dev.kiln.firecracker.api.model.BalloonUpdate;
import dev.kiln.firecracker.api.model.BootSource;
import dev.kiln.firecracker.api.model.CpuConfig;
import dev.kiln.firecracker.api.model.Drive;
import dev.kiln.firecracker.api.model.EntropyDevice;
import dev.kiln.firecracker.api.model.FirecrackerVersion;
import dev.kiln.firecracker.api.model.FullVmConfiguration;
import dev.kiln.firecracker.api.model.InstanceActionInfo;
import dev.kiln.firecracker.api.model.InstanceInfo;
import dev.kiln.firecracker.api.model.LoggerConfig;
import dev.kiln.firecracker.api.model.MachineConfiguration;
import dev.kiln.firecracker.api.model.MemoryHotplugConfig;
import dev.kiln.firecracker.api.model.MemoryHotplugSizeUpdate;
import dev.kiln.firecracker.api.model.MemoryHotplugStatus;
import dev.kiln.firecracker.api.model.MetricsConfig;
import dev.kiln.firecracker.api.model.MmdsConfig;
import dev.kiln.firecracker.api.model.NetworkInterface;
import dev.kiln.firecracker.api.model.PartialDrive;
import dev.kiln.firecracker.api.model.PartialNetworkInterface;
import dev.kiln.firecracker.api.model.PartialPmem;
import dev.kiln.firecracker.api.model.Pmem;
import dev.kiln.firecracker.api.model.SerialDevice;
import dev.kiln.firecracker.api.model.SnapshotCreateParams;
import dev.kiln.firecracker.api.model.SnapshotLoadParams;
import dev.kiln.firecracker.api.model.Vm;
import dev.kiln.firecracker.api.model.Vsock;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Supplier;
import java.util.regex.Pattern;

/**
 * A typed client for every operation of Firecracker's API (its OpenAPI spec, {@code firecracker.yaml}).
 * Each method is named after the spec's {@code operationId} and says which path it calls; the records of
 * {@code dev.kiln.firecracker.api.model} are the spec's schemas. A few shortcuts ({@link #instanceStart()},
 * {@link #pause()} …) sit on top.
 *
 * <p>Every non-2xx answer throws {@link FirecrackerApiException} (status and {@code fault_message}); no
 * answer at all throws {@link FirecrackerUnreachableException}. An operation that an older Firecracker does
 * not have fails with {@link FirecrackerApiException#isMissingEndpoint()} true. A call on a closed client, or one
 * under way when it is closed, throws {@link MachineClosedException}. Some calls are refused before anything is
 * sent: a body over {@link #maxPayloadBytes()}, and an operation the owner {@link #refuse refused}. Thread-safe.
 */
public final class FirecrackerApi implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(FirecrackerApi.class);
    public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(30);
    /** Firecracker's default {@code --http-api-max-payload-size}: the largest request body it takes. */
    public static final int DEFAULT_MAX_PAYLOAD_BYTES = 51_200;

    private static final List<Route> ROUTES = routes();

    private final ApiTransport transport;
    private final ObjectMapper json = ApiJson.mapper();
    private volatile Duration timeout = DEFAULT_TIMEOUT;
    private volatile int maxPayloadBytes = DEFAULT_MAX_PAYLOAD_BYTES;
    /** operationId to the reason it is refused. */
    private final Map<String, String> refused = new ConcurrentHashMap<>();
    /** Why the client was closed; null while it is open. */
    private volatile String closedReason;
    /** What became of the Firecracker process; null while it runs. */
    private volatile Supplier<String> vmmState = () -> null;

    public FirecrackerApi(ApiTransport transport) {
        this.transport = Objects.requireNonNull(transport, "transport");
    }

    /** A client for the API socket at {@code socket} (HTTP/1.1, keep-alive). */
    public static FirecrackerApi overUnixSocket(Path socket) {
        return new FirecrackerApi(new UnixSocketTransport(socket));
    }

    /** How long one request may take (default 30 s); a large snapshot may need more. */
    public FirecrackerApi timeout(Duration timeout) {
        if (timeout.isNegative() || timeout.isZero()) throw new IllegalArgumentException("timeout must be positive: " + timeout);
        this.timeout = timeout;
        return this;
    }

    public Duration timeout() { return timeout; }

    /**
     * A client on this one's connection whose requests may take {@code timeout} each (a snapshot of a large guest takes
     * longer than the default), with this one's refusals and process state: closing this one ends its calls too, and
     * closing it would close this one's connection.
     */
    public FirecrackerApi withTimeout(Duration timeout) {
        FirecrackerApi other = new FirecrackerApi(transport).timeout(timeout).maxPayloadBytes(maxPayloadBytes).vmmState(vmmState);
        other.refused.putAll(refused);
        other.closedReason = closedReason;
        return other;
    }

    /**
     * Tells the client what became of the Firecracker process (e.g. "exited: killed by signal 9"; null while it runs),
     * so that a call whose connection ends because the process died fails with {@link MachineClosedException} naming
     * that, whether the caller or the machine's owner notices the death first.
     */
    public FirecrackerApi vmmState(Supplier<String> state) {
        this.vmmState = Objects.requireNonNull(state, "vmmState");
        return this;
    }

    /**
     * The largest request body, in bytes, that the Firecracker on the other end takes: its
     * {@code --http-api-max-payload-size} (default {@value #DEFAULT_MAX_PAYLOAD_BYTES}). Firecracker compares it with
     * the body's length alone (a body of exactly the limit is taken; the headers do not count). A larger body is
     * refused here, before anything is sent, with what to do about it: Firecracker would only answer 400.
     */
    public FirecrackerApi maxPayloadBytes(int bytes) {
        if (bytes <= 0) throw new IllegalArgumentException("maxPayloadBytes must be positive: " + bytes);
        this.maxPayloadBytes = bytes;
        return this;
    }

    public int maxPayloadBytes() { return maxPayloadBytes; }

    /**
     * From now on, calls of the operation {@code operationId} (the spec's name, which is the method's name, e.g.
     * {@code putLogger}) throw a {@link KilnException} with {@code reason} before anything is sent. This covers
     * {@link #request} to the same method and path too. For an owner that relies on state an operation would
     * change behind its back.
     *
     * @throws IllegalArgumentException when the spec has no such operation
     */
    public FirecrackerApi refuse(String operationId, String reason) {
        Objects.requireNonNull(operationId, "operationId");
        if (reason == null || reason.isBlank()) throw new IllegalArgumentException("a refusal needs a reason");
        if (ROUTES.stream().noneMatch(r -> r.id().equals(operationId))) {
            TreeSet<String> known = new TreeSet<>();
            ROUTES.forEach(r -> known.add(r.id()));
            throw new IllegalArgumentException("Firecracker's API has no operation '" + operationId + "'; it has " + known);
        }
        refused.put(operationId, reason);
        return this;
    }

    // ---- instance --------------------------------------------------------------------------------

    @ApiOperation(id = "describeInstance", method = "GET", path = "/")
    public InstanceInfo describeInstance() {
        return call("GET", "/", null, InstanceInfo.class);
    }

    @ApiOperation(id = "createSyncAction", method = "PUT", path = "/actions")
    public void createSyncAction(InstanceActionInfo info) {
        call("PUT", "/actions", required(info, "info"), null);
    }

    @ApiOperation(id = "getFirecrackerVersion", method = "GET", path = "/version")
    public FirecrackerVersion getFirecrackerVersion() {
        return call("GET", "/version", null, FirecrackerVersion.class);
    }

    @ApiOperation(id = "patchVm", method = "PATCH", path = "/vm")
    public void patchVm(Vm vm) {
        call("PATCH", "/vm", required(vm, "vm"), null);
    }

    @ApiOperation(id = "getExportVmConfig", method = "GET", path = "/vm/config")
    public FullVmConfiguration getExportVmConfig() {
        return call("GET", "/vm/config", null, FullVmConfiguration.class);
    }

    // ---- machine ---------------------------------------------------------------------------------

    @ApiOperation(id = "getMachineConfiguration", method = "GET", path = "/machine-config")
    public MachineConfiguration getMachineConfiguration() {
        return call("GET", "/machine-config", null, MachineConfiguration.class);
    }

    /** Sets the whole machine configuration: fields left null go back to Firecracker's defaults. */
    @ApiOperation(id = "putMachineConfiguration", method = "PUT", path = "/machine-config")
    public void putMachineConfiguration(MachineConfiguration config) {
        call("PUT", "/machine-config", required(config, "config"), null);
    }

    /** Changes only the fields that are not null. */
    @ApiOperation(id = "patchMachineConfiguration", method = "PATCH", path = "/machine-config")
    public void patchMachineConfiguration(MachineConfiguration config) {
        call("PATCH", "/machine-config", required(config, "config"), null);
    }

    @ApiOperation(id = "putCpuConfiguration", method = "PUT", path = "/cpu-config")
    public void putCpuConfiguration(CpuConfig config) {
        call("PUT", "/cpu-config", required(config, "config"), null);
    }

    @ApiOperation(id = "putGuestBootSource", method = "PUT", path = "/boot-source")
    public void putGuestBootSource(BootSource bootSource) {
        call("PUT", "/boot-source", required(bootSource, "bootSource"), null);
    }

    // ---- devices ---------------------------------------------------------------------------------

    /** Adds or replaces the drive named by {@link Drive#driveId()}. */
    @ApiOperation(id = "putGuestDriveByID", method = "PUT", path = "/drives/{drive_id}")
    public void putGuestDriveByID(Drive drive) {
        call("PUT", "/drives/" + segment(required(drive, "drive").driveId(), "driveId"), drive, null);
    }

    @ApiOperation(id = "patchGuestDriveByID", method = "PATCH", path = "/drives/{drive_id}")
    public void patchGuestDriveByID(PartialDrive drive) {
        call("PATCH", "/drives/" + segment(required(drive, "drive").driveId(), "driveId"), drive, null);
    }

    @ApiOperation(id = "putGuestPmemByID", method = "PUT", path = "/pmem/{id}")
    public void putGuestPmemByID(Pmem pmem) {
        call("PUT", "/pmem/" + segment(required(pmem, "pmem").id(), "id"), pmem, null);
    }

    @ApiOperation(id = "patchGuestPmemByID", method = "PATCH", path = "/pmem/{id}")
    public void patchGuestPmemByID(PartialPmem pmem) {
        call("PATCH", "/pmem/" + segment(required(pmem, "pmem").id(), "id"), pmem, null);
    }

    @ApiOperation(id = "putGuestNetworkInterfaceByID", method = "PUT", path = "/network-interfaces/{iface_id}")
    public void putGuestNetworkInterfaceByID(NetworkInterface iface) {
        call("PUT", "/network-interfaces/" + segment(required(iface, "iface").ifaceId(), "ifaceId"), iface, null);
    }

    @ApiOperation(id = "patchGuestNetworkInterfaceByID", method = "PATCH", path = "/network-interfaces/{iface_id}")
    public void patchGuestNetworkInterfaceByID(PartialNetworkInterface iface) {
        call("PATCH", "/network-interfaces/" + segment(required(iface, "iface").ifaceId(), "ifaceId"), iface, null);
    }

    @ApiOperation(id = "putGuestVsock", method = "PUT", path = "/vsock")
    public void putGuestVsock(Vsock vsock) {
        call("PUT", "/vsock", required(vsock, "vsock"), null);
    }

    @ApiOperation(id = "putEntropyDevice", method = "PUT", path = "/entropy")
    public void putEntropyDevice(EntropyDevice device) {
        call("PUT", "/entropy", required(device, "device"), null);
    }

    @ApiOperation(id = "putSerialDevice", method = "PUT", path = "/serial")
    public void putSerialDevice(SerialDevice device) {
        call("PUT", "/serial", required(device, "device"), null);
    }

    // ---- balloon ---------------------------------------------------------------------------------

    @ApiOperation(id = "describeBalloonConfig", method = "GET", path = "/balloon")
    public Balloon describeBalloonConfig() {
        return call("GET", "/balloon", null, Balloon.class);
    }

    @ApiOperation(id = "putBalloon", method = "PUT", path = "/balloon")
    public void putBalloon(Balloon balloon) {
        call("PUT", "/balloon", required(balloon, "balloon"), null);
    }

    @ApiOperation(id = "patchBalloon", method = "PATCH", path = "/balloon")
    public void patchBalloon(BalloonUpdate update) {
        call("PATCH", "/balloon", required(update, "update"), null);
    }

    @ApiOperation(id = "describeBalloonStats", method = "GET", path = "/balloon/statistics")
    public BalloonStats describeBalloonStats() {
        return call("GET", "/balloon/statistics", null, BalloonStats.class);
    }

    @ApiOperation(id = "patchBalloonStatsInterval", method = "PATCH", path = "/balloon/statistics")
    public void patchBalloonStatsInterval(BalloonStatsUpdate update) {
        call("PATCH", "/balloon/statistics", required(update, "update"), null);
    }

    /** Starts a free page hinting run; {@code command} may be null (the spec's body is optional). */
    @ApiOperation(id = "startBalloonHinting", method = "PATCH", path = "/balloon/hinting/start")
    public void startBalloonHinting(BalloonStartCmd command) {
        call("PATCH", "/balloon/hinting/start", command, null);
    }

    @ApiOperation(id = "describeBalloonHinting", method = "GET", path = "/balloon/hinting/status")
    public BalloonHintingStatus describeBalloonHinting() {
        return call("GET", "/balloon/hinting/status", null, BalloonHintingStatus.class);
    }

    @ApiOperation(id = "stopBalloonHinting", method = "PATCH", path = "/balloon/hinting/stop")
    public void stopBalloonHinting() {
        call("PATCH", "/balloon/hinting/stop", null, null);
    }

    // ---- memory hotplug --------------------------------------------------------------------------

    @ApiOperation(id = "putMemoryHotplug", method = "PUT", path = "/hotplug/memory")
    public void putMemoryHotplug(MemoryHotplugConfig config) {
        call("PUT", "/hotplug/memory", required(config, "config"), null);
    }

    @ApiOperation(id = "patchMemoryHotplug", method = "PATCH", path = "/hotplug/memory")
    public void patchMemoryHotplug(MemoryHotplugSizeUpdate update) {
        call("PATCH", "/hotplug/memory", required(update, "update"), null);
    }

    @ApiOperation(id = "getMemoryHotplug", method = "GET", path = "/hotplug/memory")
    public MemoryHotplugStatus getMemoryHotplug() {
        return call("GET", "/hotplug/memory", null, MemoryHotplugStatus.class);
    }

    // ---- logs and metrics ------------------------------------------------------------------------

    @ApiOperation(id = "putLogger", method = "PUT", path = "/logger")
    public void putLogger(LoggerConfig logger) {
        call("PUT", "/logger", required(logger, "logger"), null);
    }

    @ApiOperation(id = "putMetrics", method = "PUT", path = "/metrics")
    public void putMetrics(MetricsConfig metrics) {
        call("PUT", "/metrics", required(metrics, "metrics"), null);
    }

    // ---- MMDS ------------------------------------------------------------------------------------

    /** Replaces the MMDS data store with {@code contents} (a JSON object). */
    @ApiOperation(id = "putMmds", method = "PUT", path = "/mmds")
    public void putMmds(JsonNode contents) {
        call("PUT", "/mmds", requireObject(contents), null);
    }

    /** Merges {@code patch} into the data store (JSON merge patch). */
    @ApiOperation(id = "patchMmds", method = "PATCH", path = "/mmds")
    public void patchMmds(JsonNode patch) {
        call("PATCH", "/mmds", requireObject(patch), null);
    }

    @ApiOperation(id = "getMmds", method = "GET", path = "/mmds")
    public JsonNode getMmds() {
        return call("GET", "/mmds", null, JsonNode.class);
    }

    @ApiOperation(id = "putMmdsConfig", method = "PUT", path = "/mmds/config")
    public void putMmdsConfig(MmdsConfig config) {
        call("PUT", "/mmds/config", required(config, "config"), null);
    }

    // ---- snapshots -------------------------------------------------------------------------------

    /** Writes a snapshot; the VM must be paused. */
    @ApiOperation(id = "createSnapshot", method = "PUT", path = "/snapshot/create")
    public void createSnapshot(SnapshotCreateParams params) {
        call("PUT", "/snapshot/create", required(params, "params"), null);
    }

    /** Loads a snapshot into a fresh Firecracker (nothing but logger and metrics configured). */
    @ApiOperation(id = "loadSnapshot", method = "PUT", path = "/snapshot/load")
    public void loadSnapshot(SnapshotLoadParams params) {
        call("PUT", "/snapshot/load", required(params, "params"), null);
    }

    // ---- shortcuts -------------------------------------------------------------------------------

    /** {@code PUT /actions InstanceStart}: boots the configured guest. */
    public void instanceStart() {
        createSyncAction(new InstanceActionInfo(InstanceActionInfo.ActionType.InstanceStart));
    }

    /** {@code PUT /actions FlushMetrics}: makes Firecracker write one metrics line now. */
    public void flushMetrics() {
        createSyncAction(new InstanceActionInfo(InstanceActionInfo.ActionType.FlushMetrics));
    }

    /** {@code PUT /actions SendCtrlAltDel}: asks an x86 guest to reboot (Kiln boots with reboot=k: it exits). */
    public void sendCtrlAltDel() {
        createSyncAction(new InstanceActionInfo(InstanceActionInfo.ActionType.SendCtrlAltDel));
    }

    public void pause() {
        patchVm(new Vm(Vm.State.Paused));
    }

    public void resume() {
        patchVm(new Vm(Vm.State.Resumed));
    }

    /**
     * Any request, untyped: for an endpoint newer than this client. {@code body} may be null; returns the
     * answer's JSON, or null for an empty answer.
     */
    public JsonNode request(String method, String path, JsonNode body) {
        if (!path.startsWith("/")) throw new IllegalArgumentException("path must start with '/': " + path);
        return call(method, path, body, JsonNode.class);
    }

    /** {@link #close(String)} with the reason {@value ApiTransport#DEFAULT_CLOSE_REASON}. */
    @Override
    public void close() {
        close(ApiTransport.DEFAULT_CLOSE_REASON);
    }

    /**
     * Closes the connection: a call under way fails at once, and every later call fails at once, both with a
     * {@link MachineClosedException} whose message carries {@code reason} (say what became of the machine). Only the
     * first close counts.
     */
    public void close(String reason) {
        Objects.requireNonNull(reason, "reason");
        synchronized (this) {
            if (closedReason != null) return;
            closedReason = reason;
        }
        transport.close(reason);
    }

    @Override
    public String toString() {
        return "FirecrackerApi[" + transport.describe() + "]";
    }

    // ---- plumbing --------------------------------------------------------------------------------

    private <T> T call(String method, String path, Object body, Class<T> answerType) {
        if (closedReason != null) throw new MachineClosedException("cannot send " + method + " " + path + " to Firecracker: " + closedReason);
        if (!refused.isEmpty()) {
            Route route = route(method, path);
            String refusal = route == null ? null : refused.get(route.id());
            if (refusal != null) throw new KilnException(route.id() + " (" + method + " " + path + ") is refused: " + refusal);
        }
        byte[] bytes = body == null ? null : toJson(body);
        if (bytes != null && bytes.length > maxPayloadBytes) throw tooLarge(method, path, bytes.length);
        long t0 = System.nanoTime();
        ApiTransport.Response response;
        try {
            response = transport.exchange(method, path, bytes, timeout);
        } catch (MachineClosedException e) {
            throw e;
        } catch (RuntimeException e) {
            // Closed while under way: whatever the transport saw (a reset, an abort), the cause is the close.
            String reason = closedReason;
            if (reason != null) throw new MachineClosedException(method + " " + path + " to Firecracker was cut short: " + reason, e);
            String gone = e instanceof FirecrackerUnreachableException ? vmmState.get() : null;
            if (gone != null) throw new MachineClosedException(method + " " + path + " got no answer: " + gone, e);
            throw e;
        }
        if (LOG.isDebugEnabled()) {
            LOG.debug("{} {}{} -> {} in {} µs", method, path, bytes == null ? "" : " " + new String(bytes, StandardCharsets.UTF_8),
                    response.status(), (System.nanoTime() - t0) / 1000);
        }
        int status = response.status();
        if (status < 200 || status > 299) throw error(method, path, response);
        if (answerType == null || response.body().length == 0) return null;
        try {
            return json.readValue(response.body(), answerType);
        } catch (IOException e) {
            throw new KilnException("cannot read Firecracker's answer to " + method + " " + path + " as "
                    + answerType.getSimpleName() + ": " + (e instanceof JsonProcessingException j ? j.getOriginalMessage() : e.getMessage()) + "; body: "
                    + Text.tail(new String(response.body(), StandardCharsets.UTF_8), 500), e);
        }
    }

    private KilnException tooLarge(String method, String path, int size) {
        int limit = maxPayloadBytes;
        Route route = route(method, path);
        String what = (route == null ? "" : route.id() + " ") + "(" + method + " " + path + ")";
        return new KilnException(what + " has a " + size + "-byte body, over the " + limit + "-byte limit of Firecracker's API"
                + " (Firecracker would refuse it with HTTP 400); nothing was sent. To allow larger bodies, start Firecracker with"
                + " --http-api-max-payload-size=<bytes> and give this client the same limit with maxPayloadBytes(<bytes>)"
                + (limit == DEFAULT_MAX_PAYLOAD_BYTES ? " (Firecracker's default is " + DEFAULT_MAX_PAYLOAD_BYTES + ")" : ""));
    }

    /** An operation of the spec: its operationId, HTTP method and path template as a pattern. */
    private record Route(String id, String method, Pattern path) {}

    private static List<Route> routes() {
        List<Route> routes = new ArrayList<>();
        for (Method m : FirecrackerApi.class.getMethods()) {
            ApiOperation op = m.getAnnotation(ApiOperation.class);
            if (op == null) continue;
            // "/drives/{drive_id}" -> "\Q/drives/\E[^/]+\Q\E"
            String regex = Pattern.quote(op.path()).replaceAll("\\{[a-z_]+}", "\\\\E[^/]+\\\\Q");
            routes.add(new Route(op.id(), op.method(), Pattern.compile(regex)));
        }
        return List.copyOf(routes);
    }

    /** The spec's operation for this request, or null for one the spec does not have. */
    private static Route route(String method, String path) {
        for (Route r : ROUTES) {
            if (r.method().equals(method) && r.path().matcher(path).matches()) return r;
        }
        return null;
    }

    private FirecrackerApiException error(String method, String path, ApiTransport.Response response) {
        String fault = null;
        try {
            JsonNode node = json.readTree(response.body());
            if (node != null && node.isObject() && node.path("fault_message").isTextual()) {
                fault = json.treeToValue(node, ApiError.class).faultMessage();
            }
        } catch (IOException notJson) {
            // Firecracker's answer to an unsupported HTTP method is not valid JSON: keep it raw.
        }
        return new FirecrackerApiException(method, path, response.status(), fault, response.body());
    }

    private byte[] toJson(Object body) {
        try {
            return json.writeValueAsBytes(body);
        } catch (JsonProcessingException e) {
            throw new KilnException("cannot write " + body.getClass().getSimpleName() + " as JSON: " + e.getOriginalMessage(), e);
        }
    }

    private static <T> T required(T value, String name) {
        return Objects.requireNonNull(value, () -> name + " must not be null");
    }

    private static JsonNode requireObject(JsonNode node) {
        if (node == null || !node.isObject()) {
            throw new IllegalArgumentException("MMDS contents must be a JSON object, got " + (node == null ? "null" : node.getNodeType()));
        }
        return node;
    }

    /** A path parameter: Firecracker ids are plain words; anything else is refused here rather than mangled. */
    static String segment(String id, String name) {
        if (id == null || id.isEmpty()) throw new IllegalArgumentException(name + " must be set: it is part of the request path");
        for (int i = 0; i < id.length(); i++) {
            char c = id.charAt(i);
            if (!(Character.isLetterOrDigit(c) && c < 128) && c != '_' && c != '-' && c != '.') {
                throw new IllegalArgumentException(name + " '" + id + "' may only contain ASCII letters, digits, '_', '-' and '.'");
            }
        }
        return id;
    }
}

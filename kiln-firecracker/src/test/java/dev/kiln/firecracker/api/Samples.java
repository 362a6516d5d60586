package dev.kiln.firecracker.api;

import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.firecracker.api.model.ApiError;
import dev.kiln.firecracker.api.model.Balloon;
import dev.kiln.firecracker.api.model.BalloonHintingStatus;
import dev.kiln.firecracker.api.model.BalloonStartCmd;
import dev.kiln.firecracker.api.model.BalloonStats;
import dev.kiln.firecracker.api.model.BalloonStatsUpdate;
import dev.kiln.firecracker.api.model.BalloonUpdate;
import dev.kiln.firecracker.api.model.BootSource;
import dev.kiln.firecracker.api.model.CpuConfig;
import dev.kiln.firecracker.api.model.CpuTemplate;
import dev.kiln.firecracker.api.model.Drive;
import dev.kiln.firecracker.api.model.EntropyDevice;
import dev.kiln.firecracker.api.model.FirecrackerVersion;
import dev.kiln.firecracker.api.model.FullVmConfiguration;
import dev.kiln.firecracker.api.model.InstanceActionInfo;
import dev.kiln.firecracker.api.model.InstanceInfo;
import dev.kiln.firecracker.api.model.LoggerConfig;
import dev.kiln.firecracker.api.model.MachineConfiguration;
import dev.kiln.firecracker.api.model.MemoryBackend;
import dev.kiln.firecracker.api.model.MemoryHotplugConfig;
import dev.kiln.firecracker.api.model.MemoryHotplugSizeUpdate;
import dev.kiln.firecracker.api.model.MemoryHotplugStatus;
import dev.kiln.firecracker.api.model.MetricsConfig;
import dev.kiln.firecracker.api.model.MmdsConfig;
import dev.kiln.firecracker.api.model.NetworkInterface;
import dev.kiln.firecracker.api.model.NetworkOverride;
import dev.kiln.firecracker.api.model.PartialDrive;
import dev.kiln.firecracker.api.model.PartialNetworkInterface;
import dev.kiln.firecracker.api.model.PartialPmem;
import dev.kiln.firecracker.api.model.Pmem;
import dev.kiln.firecracker.api.model.RateLimiter;
import dev.kiln.firecracker.api.model.SerialDevice;
import dev.kiln.firecracker.api.model.SnapshotCreateParams;
import dev.kiln.firecracker.api.model.SnapshotLoadParams;
import dev.kiln.firecracker.api.model.TokenBucket;
import dev.kiln.firecracker.api.model.Vm;
import dev.kiln.firecracker.api.model.Vsock;
import dev.kiln.firecracker.api.model.VsockOverride;

import java.lang.reflect.Constructor;
import java.lang.reflect.ParameterizedType;
import java.lang.reflect.RecordComponent;
import java.lang.reflect.Type;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Builds instances of the API records by reflection, so the contract tests cover every field and every enum
 * constant without hand-written samples that could miss one. Values satisfy the spec's bounds.
 */
final class Samples {
    /** Which spec definition each record stands for. */
    static final Map<String, Class<?>> DEFINITIONS = new LinkedHashMap<>();

    static {
        DEFINITIONS.put("Balloon", Balloon.class);
        DEFINITIONS.put("BalloonUpdate", BalloonUpdate.class);
        DEFINITIONS.put("BalloonStats", BalloonStats.class);
        DEFINITIONS.put("BalloonStartCmd", BalloonStartCmd.class);
        DEFINITIONS.put("BalloonHintingStatus", BalloonHintingStatus.class);
        DEFINITIONS.put("BalloonStatsUpdate", BalloonStatsUpdate.class);
        DEFINITIONS.put("BootSource", BootSource.class);
        DEFINITIONS.put("CpuTemplate", CpuTemplate.class);
        DEFINITIONS.put("CpuConfig", CpuConfig.class);
        DEFINITIONS.put("CpuidLeafModifier", CpuConfig.CpuidLeafModifier.class);
        DEFINITIONS.put("CpuidRegisterModifier", CpuConfig.CpuidRegisterModifier.class);
        DEFINITIONS.put("MsrModifier", CpuConfig.MsrModifier.class);
        DEFINITIONS.put("ArmRegisterModifier", CpuConfig.ArmRegisterModifier.class);
        DEFINITIONS.put("VcpuFeatures", CpuConfig.VcpuFeatures.class);
        DEFINITIONS.put("Drive", Drive.class);
        DEFINITIONS.put("Pmem", Pmem.class);
        DEFINITIONS.put("Error", ApiError.class);
        DEFINITIONS.put("FullVmConfiguration", FullVmConfiguration.class);
        DEFINITIONS.put("InstanceActionInfo", InstanceActionInfo.class);
        DEFINITIONS.put("InstanceInfo", InstanceInfo.class);
        DEFINITIONS.put("Logger", LoggerConfig.class);
        DEFINITIONS.put("MachineConfiguration", MachineConfiguration.class);
        DEFINITIONS.put("MemoryBackend", MemoryBackend.class);
        DEFINITIONS.put("Metrics", MetricsConfig.class);
        DEFINITIONS.put("MmdsConfig", MmdsConfig.class);
        DEFINITIONS.put("MmdsContentsObject", JsonNode.class);
        DEFINITIONS.put("NetworkInterface", NetworkInterface.class);
        DEFINITIONS.put("PartialDrive", PartialDrive.class);
        DEFINITIONS.put("PartialNetworkInterface", PartialNetworkInterface.class);
        DEFINITIONS.put("PartialPmem", PartialPmem.class);
        DEFINITIONS.put("RateLimiter", RateLimiter.class);
        DEFINITIONS.put("SnapshotCreateParams", SnapshotCreateParams.class);
        DEFINITIONS.put("NetworkOverride", NetworkOverride.class);
        DEFINITIONS.put("VsockOverride", VsockOverride.class);
        DEFINITIONS.put("SnapshotLoadParams", SnapshotLoadParams.class);
        DEFINITIONS.put("TokenBucket", TokenBucket.class);
        DEFINITIONS.put("Vm", Vm.class);
        DEFINITIONS.put("EntropyDevice", EntropyDevice.class);
        DEFINITIONS.put("SerialDevice", SerialDevice.class);
        DEFINITIONS.put("MemoryHotplugConfig", MemoryHotplugConfig.class);
        DEFINITIONS.put("MemoryHotplugSizeUpdate", MemoryHotplugSizeUpdate.class);
        DEFINITIONS.put("MemoryHotplugStatus", MemoryHotplugStatus.class);
        DEFINITIONS.put("FirecrackerVersion", FirecrackerVersion.class);
        DEFINITIONS.put("Vsock", Vsock.class);
    }

    /** Numbers the spec bounds: within them. Everything else numeric gets 4. */
    private static final Map<String, Long> NUMBERS = Map.of("mtu", 1500L, "slotSizeMib", 128L, "blockSizeMib", 2L,
            "guestCid", 3L, "vcpuCount", 2L);
    private static final Map<String, String> STRINGS = Map.of("ipv4Address", "169.254.169.254",
            "guestMac", "06:00:AC:10:00:02", "bitmap", "0bxxxxxxxxxxxxxxxxxxxxxxxxxxxx0001", "leaf", "0x1",
            "subleaf", "0x0", "addr", "0x10a", "driveId", "rootfs", "ifaceId", "eth0", "id", "pmem0");

    private Samples() {}

    static String definitionOf(Class<?> type) {
        return DEFINITIONS.entrySet().stream().filter(e -> e.getValue() == type).map(Map.Entry::getKey).findFirst()
                .orElseThrow(() -> new IllegalArgumentException(type + " stands for no spec definition"));
    }

    /** The JSON name of a record component, as the client writes it. */
    static String jsonName(RecordComponent c) {
        JsonProperty p = c.getAccessor().getAnnotation(JsonProperty.class);
        if (p != null && !p.value().isEmpty()) return p.value();
        return new PropertyNamingStrategies.SnakeCaseStrategy().translate(c.getName());
    }

    /** Every field set (recursively). */
    static Object full(Class<?> type) {
        return build(type, null, false, Map.of());
    }

    /** Only the fields the spec requires (recursively). */
    static Object requiredOnly(Class<?> type) {
        return build(type, null, true, Map.of());
    }

    /** Full samples, one per constant of every enum field reachable from {@code type}. */
    static List<Object> enumVariants(Class<?> type) {
        List<Object> variants = new ArrayList<>();
        for (String key : enumFields(type, new ArrayList<>())) {
            Class<?> enumType = enumTypeOf(key);
            for (Object constant : enumType.getEnumConstants()) variants.add(build(type, null, false, Map.of(key, constant)));
        }
        return variants;
    }

    /** Every sample of {@code type} the contract tests send: full, required-only, and all enum variants. */
    static List<Object> all(Class<?> type) {
        List<Object> all = new ArrayList<>();
        all.add(full(type));
        all.add(requiredOnly(type));
        all.addAll(enumVariants(type));
        return all;
    }

    private static final Map<String, Class<?>> ENUM_FIELDS = new LinkedHashMap<>();

    private static Class<?> enumTypeOf(String key) {
        return ENUM_FIELDS.get(key);
    }

    private static List<String> enumFields(Class<?> type, List<Class<?>> seen) {
        List<String> keys = new ArrayList<>();
        if (!type.isRecord() || seen.contains(type)) return keys;
        seen.add(type);
        for (RecordComponent c : type.getRecordComponents()) {
            Class<?> t = elementClass(c.getGenericType());
            if (t.isEnum()) {
                String key = type.getName() + "#" + c.getName();
                ENUM_FIELDS.put(key, t);
                keys.add(key);
            } else {
                keys.addAll(enumFields(t, seen));
            }
        }
        return keys;
    }

    private static Class<?> elementClass(Type t) {
        if (t instanceof Class<?> c) return c;
        if (t instanceof ParameterizedType p && p.getRawType() == List.class) return elementClass(p.getActualTypeArguments()[0]);
        if (t instanceof ParameterizedType p) return (Class<?>) p.getRawType();
        throw new IllegalArgumentException("unexpected type " + t);
    }

    private static Object build(Type type, String name, boolean requiredOnly, Map<String, Object> overrides) {
        if (type instanceof ParameterizedType p && p.getRawType() == List.class) {
            return List.of(build(p.getActualTypeArguments()[0], name, requiredOnly, overrides));
        }
        if (type instanceof ParameterizedType p && p.getRawType() == Map.class) return Map.of("team", "kiln");
        Class<?> c = (Class<?>) type;
        if (c == String.class) return STRINGS.getOrDefault(name, "/srv/" + name);
        if (c == Integer.class) return NUMBERS.getOrDefault(name, 4L).intValue();
        if (c == Long.class) return NUMBERS.getOrDefault(name, 4L);
        if (c == Boolean.class) return Boolean.TRUE;
        if (c.isEnum()) return c.getEnumConstants()[0];
        if (c == JsonNode.class) return mmdsContents();
        if (!c.isRecord()) throw new IllegalArgumentException("cannot build a sample of " + c);
        RecordComponent[] components = c.getRecordComponents();
        Set<String> required = requiredOnly ? Spec.get().required(definitionOf(c)) : Set.of();
        Object[] args = new Object[components.length];
        Class<?>[] types = new Class<?>[components.length];
        for (int i = 0; i < components.length; i++) {
            RecordComponent rc = components[i];
            types[i] = rc.getType();
            String key = c.getName() + "#" + rc.getName();
            if (overrides.containsKey(key)) args[i] = overrides.get(key);
            else if (requiredOnly && !required.contains(jsonName(rc))) args[i] = null;
            else args[i] = build(rc.getGenericType(), rc.getName(), requiredOnly, overrides);
        }
        try {
            Constructor<?> ctor = c.getDeclaredConstructor(types);
            return ctor.newInstance(args);
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("cannot build " + c, e);
        }
    }

    static ObjectNode mmdsContents() {
        ObjectNode root = JsonNodeFactory.instance.objectNode();
        root.putObject("latest").putObject("meta-data").put("ami-id", "ami-12345678").put("reservation-id", "r-1");
        return root;
    }
}

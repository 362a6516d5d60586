package dev.kiln.firecracker.api;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/** Firecracker's official OpenAPI spec (a copy of firecracker.yaml in the test resources), read as a tree. */
final class Spec {
    static final String RESOURCE = "firecracker-api/firecracker.yaml";

    /** One path+method pair of the spec. */
    record Operation(String id, String method, String path) {}

    private static final Spec INSTANCE = new Spec();

    private final Path file;
    private final String text;
    private final JsonNode root;

    private Spec() {
        URL url = Spec.class.getClassLoader().getResource(RESOURCE);
        if (url == null) throw new IllegalStateException(RESOURCE + " is missing from the test resources");
        try {
            file = Path.of(url.toURI());
            text = Files.readString(file);
            root = new ObjectMapper(new YAMLFactory()).readTree(text);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    static Spec get() {
        return INSTANCE;
    }

    String text() { return text; }

    String version() { return root.path("info").path("version").asText(); }

    List<Operation> operations() {
        List<Operation> ops = new ArrayList<>();
        for (Iterator<String> paths = root.path("paths").fieldNames(); paths.hasNext(); ) {
            String path = paths.next();
            JsonNode methods = root.path("paths").path(path);
            for (Iterator<String> ms = methods.fieldNames(); ms.hasNext(); ) {
                String method = ms.next();
                if (method.equals("parameters")) continue;
                ops.add(new Operation(methods.path(method).path("operationId").asText(), method.toUpperCase(Locale.ROOT), path));
            }
        }
        return ops;
    }

    Set<String> definitionNames() {
        Set<String> names = new LinkedHashSet<>();
        root.path("definitions").fieldNames().forEachRemaining(names::add);
        return names;
    }

    JsonNode definition(String name) {
        JsonNode d = root.path("definitions").path(name);
        if (d.isMissingNode()) throw new IllegalArgumentException("no definition " + name + " in the spec");
        return d;
    }

    Set<String> properties(String definition) {
        Set<String> names = new LinkedHashSet<>();
        definition(definition).path("properties").fieldNames().forEachRemaining(names::add);
        return names;
    }

    Set<String> required(String definition) {
        Set<String> names = new LinkedHashSet<>();
        definition(definition).path("required").forEach(n -> names.add(n.asText()));
        return names;
    }
}

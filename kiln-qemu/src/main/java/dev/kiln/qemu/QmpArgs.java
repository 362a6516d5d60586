package dev.kiln.qemu;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.support.JsonFramer;

/** Builds QMP arguments from name/value pairs: {@code QmpArgs.of("id", "disk0", "force", true)}. */
public final class QmpArgs {
    private QmpArgs() {}

    public static ObjectNode of(Object... nameValues) {
        if (nameValues.length % 2 != 0) throw new IllegalArgumentException("QMP arguments come in name/value pairs");
        ObjectNode o = JsonFramer.JSON.createObjectNode();
        for (int i = 0; i < nameValues.length; i += 2) {
            o.set((String) nameValues[i], JsonFramer.JSON.valueToTree(nameValues[i + 1]));
        }
        return o;
    }
}

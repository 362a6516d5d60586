package dev.kiln.os;

import org.junit.jupiter.api.extension.AfterEachCallback;
import org.junit.jupiter.api.extension.BeforeEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

import java.util.Set;

import static org.assertj.core.api.Assertions.assertThat;

/** Fails a test that leaves a pipe, a socket or a child process behind. */
final class NoOsLeaks implements BeforeEachCallback, AfterEachCallback {
    private static final ExtensionContext.Namespace NS = ExtensionContext.Namespace.create(NoOsLeaks.class);

    @Override
    public void beforeEach(ExtensionContext context) throws Exception {
        context.getStore(NS).put("held", OsTestSupport.openPipesSocketsAndChildren());
    }

    @Override
    @SuppressWarnings("unchecked")
    public void afterEach(ExtensionContext context) throws Exception {
        Set<String> before = (Set<String>) context.getStore(NS).get("held");
        assertThat(OsTestSupport.openPipesSocketsAndChildren()).as("leaked").isSubsetOf(before);
    }
}

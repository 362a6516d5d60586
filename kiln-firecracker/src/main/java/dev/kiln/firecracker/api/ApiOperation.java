package dev.kiln.firecracker.api;

import java.lang.annotation.Documented;
import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * Marks the client method that implements one operation of Firecracker's OpenAPI spec, so that a test can
 * check that every operation of {@code firecracker.yaml} has one and that method and path agree.
 */
@Documented
@Retention(RetentionPolicy.RUNTIME)
@Target(ElementType.METHOD)
public @interface ApiOperation {
    /** The spec's {@code operationId}. */
    String id();

    /** GET, PUT or PATCH. */
    String method();

    /** The path template as the spec writes it, e.g. {@code /drives/{drive_id}}. */
    String path();
}

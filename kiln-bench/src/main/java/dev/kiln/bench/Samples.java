package dev.kiln.bench;

import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/** Measured values of one scenario (milliseconds unless said otherwise) and their order statistics. */
final class Samples {
    final String name;
    final String unit;
    private final List<Double> values = new ArrayList<>();

    Samples(String name, String unit) {
        this.name = name;
        this.unit = unit;
    }

    Samples(String name) {
        this(name, "ms");
    }

    void add(double v) {
        if (Double.isNaN(v) || Double.isInfinite(v)) throw new IllegalArgumentException(name + ": not a number: " + v);
        values.add(v);
    }

    void addNanos(long nanos) {
        add(nanos / 1e6);
    }

    int n() { return values.size(); }

    double last() { return values.getLast(); }

    boolean isEmpty() { return values.isEmpty(); }

    private double[] sorted() {
        if (values.isEmpty()) throw new IllegalStateException(name + ": no samples");
        double[] a = values.stream().mapToDouble(Double::doubleValue).toArray();
        Arrays.sort(a);
        return a;
    }

    /** The q-quantile, linear between closest ranks. */
    double quantile(double q) {
        double[] a = sorted();
        double pos = q * (a.length - 1);
        int lo = (int) Math.floor(pos);
        int hi = Math.min(a.length - 1, lo + 1);
        return a[lo] + (a[hi] - a[lo]) * (pos - lo);
    }

    double median() { return quantile(0.5); }
    double min() { return sorted()[0]; }
    double max() { double[] a = sorted(); return a[a.length - 1]; }
    double p10() { return quantile(0.1); }
    double p90() { return quantile(0.9); }

    /** "median (p10–p90)" or, for a handful of values, "median (min–max)". */
    String summary() {
        if (values.size() < 10) return String.format(Locale.ROOT, "%s (%s–%s)", fmt(median()), fmt(min()), fmt(max()));
        return String.format(Locale.ROOT, "%s (%s–%s)", fmt(median()), fmt(p10()), fmt(p90()));
    }

    String spreadLabel() {
        return values.size() < 10 ? "min–max" : "p10–p90";
    }

    String fmt(double v) {
        String s = Math.abs(v) >= 100 ? String.format(Locale.ROOT, "%.0f", v)
                : Math.abs(v) >= 1 ? String.format(Locale.ROOT, "%.2f", v) : String.format(Locale.ROOT, "%.3f", v);
        return s + (unit.isEmpty() ? "" : " " + unit);
    }

    ObjectNode toJson() {
        ObjectNode o = JsonNodeFactory.instance.objectNode();
        o.put("name", name).put("unit", unit).put("n", values.size());
        if (!values.isEmpty()) {
            o.put("median", median()).put("min", min()).put("max", max()).put("p10", p10()).put("p90", p90());
        }
        values.forEach(o.putArray("values")::add);
        return o;
    }
}

package dev.kiln.firecracker.api.model;

/**
 * {@code Balloon}: the balloon device. {@code amountMib} and {@code deflateOnOom} are required; a non-zero
 * {@code statsPollingIntervalS} turns statistics on; hinting and reporting need a recent Firecracker.
 */
public record Balloon(Integer amountMib, Boolean deflateOnOom, Integer statsPollingIntervalS, Boolean freePageHinting,
                      Boolean freePageReporting) {
    public static Balloon of(int amountMib, boolean deflateOnOom, int statsPollingIntervalS) {
        return new Balloon(amountMib, deflateOnOom, statsPollingIntervalS, null, null);
    }
}

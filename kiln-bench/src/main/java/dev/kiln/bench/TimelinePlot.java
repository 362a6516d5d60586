package dev.kiln.bench;

import javax.imageio.ImageIO;
import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.awt.FontMetrics;
import java.awt.Graphics2D;
import java.awt.RenderingHints;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Draws boot-phase timelines as a PNG with the JDK alone (headless Java2D and ImageIO): one bar per harness,
 * split where each phase ended (medians), with a whisker for the spread of the total.
 */
final class TimelinePlot {
    /** A phase that ended {@code endMs} after the start. */
    record Phase(String name, double endMs) {}

    /** One harness: its phases in order, and the spread of its total (min and max). */
    record Row(String label, List<Phase> phases, double totalMin, double totalMax) {}

    private static final Color[] PALETTE = {
            new Color(0x4e79a7), new Color(0xf28e2b), new Color(0x59a14f), new Color(0xe15759),
            new Color(0x76b7b2), new Color(0xedc948), new Color(0xb07aa1), new Color(0x9c755f)};

    static void write(Path file, String title, String subtitle, List<Row> rows) throws IOException {
        System.setProperty("java.awt.headless", "true");
        Map<String, Color> colors = new LinkedHashMap<>();
        for (Row r : rows) for (Phase p : r.phases) colors.computeIfAbsent(p.name, k -> PALETTE[colors.size() % PALETTE.length]);
        double maxMs = 1;
        for (Row r : rows) {
            maxMs = Math.max(maxMs, r.totalMax);
            for (Phase p : r.phases) maxMs = Math.max(maxMs, p.endMs);
        }
        double tick = niceTick(maxMs / 8);
        double axisMax = Math.ceil(maxMs / tick) * tick;

        int width = 1100, left = 250, right = 90, top = 70, rowH = 56, barH = 30;
        int legendRows = (colors.size() + 3) / 4;
        int height = top + rows.size() * rowH + 50 + legendRows * 24 + 20;
        BufferedImage img = new BufferedImage(width, height, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = img.createGraphics();
        try {
            g.setRenderingHint(RenderingHints.KEY_ANTIALIASING, RenderingHints.VALUE_ANTIALIAS_ON);
            g.setRenderingHint(RenderingHints.KEY_TEXT_ANTIALIASING, RenderingHints.VALUE_TEXT_ANTIALIAS_ON);
            g.setColor(Color.WHITE);
            g.fillRect(0, 0, width, height);
            g.setColor(Color.BLACK);
            g.setFont(new Font(Font.SANS_SERIF, Font.BOLD, 17));
            g.drawString(title, 16, 28);
            g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 12));
            g.setColor(Color.DARK_GRAY);
            g.drawString(subtitle, 16, 48);

            int plotW = width - left - right;
            int axisY = top + rows.size() * rowH + 8;
            // grid and axis
            g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 11));
            FontMetrics fm = g.getFontMetrics();
            for (double t = 0; t <= axisMax + 1e-9; t += tick) {
                int x = left + (int) Math.round(t / axisMax * plotW);
                g.setColor(new Color(0xe6e6e6));
                g.drawLine(x, top - 6, x, axisY);
                g.setColor(Color.DARK_GRAY);
                String s = label(t);
                g.drawString(s, x - fm.stringWidth(s) / 2, axisY + 16);
            }
            g.drawString("milliseconds from the start of the launch", left, axisY + 32);

            for (int i = 0; i < rows.size(); i++) {
                Row r = rows.get(i);
                int y = top + i * rowH;
                g.setColor(Color.BLACK);
                g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 13));
                drawWrapped(g, r.label, 16, y + 12, left - 24);
                double from = 0;
                for (Phase p : r.phases) {
                    int x0 = left + (int) Math.round(from / axisMax * plotW);
                    int x1 = left + (int) Math.round(Math.max(from, p.endMs) / axisMax * plotW);
                    g.setColor(colors.get(p.name));
                    g.fillRect(x0, y, Math.max(1, x1 - x0), barH);
                    from = Math.max(from, p.endMs);
                }
                // total and its spread
                g.setColor(Color.BLACK);
                g.setStroke(new BasicStroke(1.5f));
                int xMin = left + (int) Math.round(r.totalMin / axisMax * plotW);
                int xMax = left + (int) Math.round(r.totalMax / axisMax * plotW);
                int yc = y + barH / 2;
                g.drawLine(xMin, yc, xMax, yc);
                g.drawLine(xMin, yc - 6, xMin, yc + 6);
                g.drawLine(xMax, yc - 6, xMax, yc + 6);
                g.setFont(new Font(Font.SANS_SERIF, Font.BOLD, 12));
                String total = label(from) + " ms";
                g.drawString(total, Math.max(xMax, left + (int) Math.round(from / axisMax * plotW)) + 8, yc + 5);
            }

            // legend
            g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 12));
            int ly = axisY + 50, lx = 16, col = 0;
            for (Map.Entry<String, Color> e : colors.entrySet()) {
                int x = lx + col * ((width - 32) / 4);
                g.setColor(e.getValue());
                g.fillRect(x, ly - 11, 14, 14);
                g.setColor(Color.BLACK);
                g.drawString(e.getKey(), x + 20, ly);
                if (++col == 4) {
                    col = 0;
                    ly += 24;
                }
            }
        } finally {
            g.dispose();
        }
        if (!ImageIO.write(img, "png", file.toFile())) throw new IOException("no PNG writer in this JDK");
    }

    private static void drawWrapped(Graphics2D g, String text, int x, int y, int maxW) {
        FontMetrics fm = g.getFontMetrics();
        StringBuilder line = new StringBuilder();
        int dy = 0;
        for (String word : text.split(" ")) {
            if (!line.isEmpty() && fm.stringWidth(line + " " + word) > maxW) {
                g.drawString(line.toString(), x, y + dy);
                dy += fm.getHeight();
                line.setLength(0);
            }
            if (!line.isEmpty()) line.append(' ');
            line.append(word);
        }
        g.drawString(line.toString(), x, y + dy);
    }

    private static String label(double ms) {
        return ms >= 100 || ms == Math.rint(ms) ? String.format(Locale.ROOT, "%.0f", ms) : String.format(Locale.ROOT, "%.1f", ms);
    }

    private static double niceTick(double raw) {
        double p = Math.pow(10, Math.floor(Math.log10(raw)));
        for (double m : new double[] {1, 2, 5, 10}) if (m * p >= raw) return m * p;
        return 10 * p;
    }
}

package dev.gmem.trace;

import java.util.List;
import java.util.Locale;

/**
 * Draws a {@link Trace} as one SVG picture (or an HTML page holding it): guest memory in place over
 * time by the path that put it there (the faulting page, fault-around, zero pages and holes by
 * faults, the prefetcher), the moments the restore became ready and fully resident, and the
 * distribution of fault service times. Self-contained: no script, no external font or style.
 */
public final class TraceReport {
    private static final int WIDTH = 960;
    private static final int PLOT_LEFT = 80;
    private static final int PLOT_RIGHT = WIDTH - 30;
    private static final int TOP_Y = 60;
    private static final int TOP_H = 300;
    private static final int BOTTOM_Y = 440;
    private static final int BOTTOM_H = 150;
    private static final int HEIGHT = 650;

    /** The paths drawn, each with its colour. */
    private static final String[][] PATHS = {
        {"prefetch", "#4477aa"},
        {"fault (the page that faulted)", "#ee6677"},
        {"fault-around", "#ccbb44"},
        {"zero pages and holes by faults", "#66ccee"}
    };

    private TraceReport() {}

    public static String html(Trace t) {
        return "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + esc(t.what())
                + "</title></head>\n<body style=\"font-family: sans-serif\">\n" + svg(t) + "\n</body></html>\n";
    }

    public static String svg(Trace t) {
        StringBuilder b = new StringBuilder();
        b.append(String.format(
                Locale.ROOT,
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">%n",
                WIDTH,
                HEIGHT,
                WIDTH,
                HEIGHT,
                WIDTH,
                HEIGHT));
        b.append("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
        b.append(text(PLOT_LEFT, 24, 16, "bold", t.what()));
        List<Trace.Sample> s = t.samples();
        // the time axis ends a little after the last change: a check that runs on afterwards is no part of the picture
        double endMs = 1.05
                * Math.max(
                        1,
                        Math.max(s.isEmpty() ? 0 : s.get(s.size() - 1).ms(), Math.max(t.readyMs(), t.populatedMs())));
        long[] maxPerPath = new long[4];
        long maxAll = Math.max(1, t.dataPages());
        for (Trace.Sample x : s) {
            long[] v = values(x);
            for (int i = 0; i < 4; i++) maxPerPath[i] = Math.max(maxPerPath[i], v[i]);
            maxAll = Math.max(maxAll, v[0] + v[1] + v[2] + v[3]);
        }
        double mib = t.pageSize() / (1024.0 * 1024.0);
        b.append(text(
                PLOT_LEFT,
                46,
                12,
                "normal",
                String.format(
                        Locale.ROOT,
                        "guest memory in place over time, by path (stacked): %.1f MiB of data; ready after %.2f ms, fully resident after %s",
                        t.dataPages() * mib,
                        t.readyMs(),
                        t.populatedMs() < 0
                                ? "(not reached)"
                                : String.format(Locale.ROOT, "%.1f ms", t.populatedMs()))));
        axes(b, TOP_Y, TOP_H, endMs, maxAll * mib, "ms since the restore began", "MiB");
        // stacked areas, bottom to top in PATHS order
        for (int layer = 3; layer >= 0; layer--) {
            StringBuilder pts = new StringBuilder();
            pts.append(x(0, endMs))
                    .append(',')
                    .append(y(0, maxAll, TOP_Y, TOP_H))
                    .append(' ');
            long previous = 0;
            double previousMs = 0;
            for (Trace.Sample x : s) {
                long[] v = values(x);
                long top = 0;
                for (int i = 0; i <= layer; i++) top += v[i];
                // a step: the count holds until the next sample
                pts.append(fmt(x(x.ms(), endMs)))
                        .append(',')
                        .append(fmt(y(previous, maxAll, TOP_Y, TOP_H)))
                        .append(' ');
                pts.append(fmt(x(x.ms(), endMs)))
                        .append(',')
                        .append(fmt(y(top, maxAll, TOP_Y, TOP_H)))
                        .append(' ');
                previous = top;
                previousMs = x.ms();
            }
            pts.append(fmt(x(Math.max(previousMs, endMs), endMs)))
                    .append(',')
                    .append(fmt(y(previous, maxAll, TOP_Y, TOP_H)))
                    .append(' ');
            pts.append(fmt(x(Math.max(previousMs, endMs), endMs))).append(',').append(fmt(y(0, maxAll, TOP_Y, TOP_H)));
            b.append("<polygon class=\"path-")
                    .append(layer)
                    .append("\" fill=\"")
                    .append(PATHS[layer][1])
                    .append("\" stroke=\"none\" points=\"")
                    .append(pts)
                    .append("\"/>\n");
        }
        marker(b, t.readyMs(), endMs, "ready");
        marker(b, t.populatedMs(), endMs, "fully resident");
        // legend
        int lx = PLOT_LEFT + 10;
        for (int i = 0; i < 4; i++) {
            int ly = TOP_Y + 10 + i * 18;
            b.append(String.format(
                    Locale.ROOT,
                    "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/>%n",
                    lx,
                    ly,
                    PATHS[i][1]));
            b.append(text(
                    lx + 18,
                    ly + 10,
                    12,
                    "normal",
                    String.format(Locale.ROOT, "%s: %.1f MiB", PATHS[i][0], maxPerPath[i] * mib)));
        }
        latency(b, t);
        b.append("</svg>\n");
        return b.toString();
    }

    /** prefetch, the faulting page, fault-around, zero: the layers of the picture. */
    private static long[] values(Trace.Sample x) {
        return new long[] {x.prefetchPages(), x.faultPages() - x.faultAroundPages(), x.faultAroundPages(), x.zeroPages()
        };
    }

    private static void latency(StringBuilder b, Trace t) {
        List<Long> counts = t.latencyCounts();
        long total = counts.stream().mapToLong(Long::longValue).sum();
        b.append(text(
                PLOT_LEFT,
                BOTTOM_Y - 16,
                12,
                "normal",
                "fault service time: " + total + " faults"
                        + (total == 0 ? " (none: the prefetcher was first everywhere)" : "")));
        long max = Math.max(1, counts.stream().mapToLong(Long::longValue).max().orElse(1));
        int n = counts.size();
        double w = (PLOT_RIGHT - PLOT_LEFT) / (double) n;
        b.append(String.format(
                Locale.ROOT,
                "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>%n",
                PLOT_LEFT,
                BOTTOM_Y + BOTTOM_H,
                PLOT_RIGHT,
                BOTTOM_Y + BOTTOM_H));
        for (int i = 0; i < n; i++) {
            long c = counts.get(i);
            double h = (BOTTOM_H - 18) * (double) c / max; // room above the tallest bar for its count
            double x0 = PLOT_LEFT + i * w;
            b.append(String.format(
                    Locale.ROOT,
                    "<rect class=\"latency\" x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"#228833\"/>%n",
                    fmt(x0 + 2),
                    fmt(BOTTOM_Y + BOTTOM_H - h),
                    fmt(w - 4),
                    fmt(h)));
            String label = i < t.latencyBoundsUs().size()
                    ? "≤ " + us(t.latencyBoundsUs().get(i))
                    : "> " + us(t.latencyBoundsUs().get(n - 2));
            b.append(text((int) (x0 + w / 2), BOTTOM_Y + BOTTOM_H + 16, 11, "normal", label, "middle"));
            if (c > 0)
                b.append(text(
                        (int) (x0 + w / 2),
                        (int) (BOTTOM_Y + BOTTOM_H - h - 4),
                        11,
                        "normal",
                        Long.toString(c),
                        "middle"));
        }
    }

    private static String us(long v) {
        return v >= 1000 ? (v / 1000) + " ms" : v + " µs";
    }

    private static void axes(
            StringBuilder b, int top, int height, double endMs, double maxMib, String xLabel, String yLabel) {
        b.append(String.format(
                Locale.ROOT,
                "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>%n",
                PLOT_LEFT,
                top + height,
                PLOT_RIGHT,
                top + height));
        b.append(String.format(
                Locale.ROOT,
                "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>%n",
                PLOT_LEFT,
                top,
                PLOT_LEFT,
                top + height));
        for (int i = 0; i <= 5; i++) {
            double ms = endMs * i / 5;
            int px = (int) Math.round(x(ms, endMs));
            b.append(String.format(
                    Locale.ROOT,
                    "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>%n",
                    px,
                    top + height,
                    px,
                    top + height + 4));
            b.append(text(
                    px,
                    top + height + 18,
                    11,
                    "normal",
                    String.format(Locale.ROOT, ms < 10 ? "%.2f" : "%.0f", ms),
                    "middle"));
            double v = maxMib * i / 5;
            int py = (int) Math.round(top + height - height * (double) i / 5);
            b.append(String.format(
                    Locale.ROOT,
                    "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#dddddd\"/>%n",
                    PLOT_LEFT,
                    py,
                    PLOT_RIGHT,
                    py));
            b.append(text(PLOT_LEFT - 6, py + 4, 11, "normal", String.format(Locale.ROOT, "%.0f", v), "end"));
        }
        b.append(text((PLOT_LEFT + PLOT_RIGHT) / 2, top + height + 34, 12, "normal", xLabel, "middle"));
        b.append(text(PLOT_LEFT - 50, top + height / 2, 12, "normal", yLabel, "middle"));
    }

    private static void marker(StringBuilder b, double ms, double endMs, String label) {
        if (ms < 0) return;
        String px = fmt(x(ms, endMs));
        b.append("<line class=\"marker\" x1=\"")
                .append(px)
                .append("\" y1=\"")
                .append(TOP_Y)
                .append("\" x2=\"")
                .append(px)
                .append("\" y2=\"")
                .append(TOP_Y + TOP_H)
                .append("\" stroke=\"black\" stroke-dasharray=\"4 3\"/>\n");
        int at = (int) Math.round(x(ms, endMs));
        boolean nearTheEnd = at > PLOT_RIGHT - 100; // the label goes to the line's left there, inside the picture
        b.append(text(
                nearTheEnd ? at - 4 : at + 4, TOP_Y + TOP_H - 6, 11, "normal", label, nearTheEnd ? "end" : "start"));
    }

    private static double x(double ms, double endMs) {
        return PLOT_LEFT + (PLOT_RIGHT - PLOT_LEFT) * ms / endMs;
    }

    private static double y(long pages, long max, int top, int height) {
        return top + height - height * (double) pages / max;
    }

    private static String fmt(double v) {
        return String.format(Locale.ROOT, "%.1f", v);
    }

    private static String text(int x, int y, int size, String weight, String s) {
        return text(x, y, size, weight, s, "start");
    }

    private static String text(int x, int y, int size, String weight, String s, String anchor) {
        return String.format(
                Locale.ROOT,
                "<text x=\"%d\" y=\"%d\" font-size=\"%d\" font-weight=\"%s\" text-anchor=\"%s\">%s</text>%n",
                x,
                y,
                size,
                weight,
                anchor,
                esc(s));
    }

    private static String esc(String s) {
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\"", "&quot;");
    }
}

#include "svgplot.h"

#include <math.h>
#include <stdio.h>

static const char *colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};

/* Labels come from the command line (optimizer specs, paths): escape what XML reserves. */
static void put_text(FILE *f, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static double yval(double y, bool log_y) { return log_y ? log10(y > 1e-30 ? y : 1e-30) : y; }

int svg_plot(const char *path, const char *title, const char *xlabel, const char *ylabel, bool log_y,
             const svg_series *series, int n_series) {
    const double W = 720, H = 440, L = 70, R = 20, T = 40, B = 55;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int s = 0; s < n_series; s++)
        for (int i = 0; i < series[s].n; i++) {
            double x = series[s].x[i], y = yval(series[s].y[i], log_y);
            if (!isfinite(x) || !isfinite(y)) continue;
            x0 = fmin(x0, x), x1 = fmax(x1, x), y0 = fmin(y0, y), y1 = fmax(y1, y);
        }
    if (!(x1 > x0)) x0 -= 1, x1 += 1;
    if (!(y1 > y0)) y0 -= 1, y1 += 1;
    double pad = 0.05 * (y1 - y0);
    y0 -= pad, y1 += pad;
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" font-family=\"sans-serif\" "
               "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H);
    fprintf(f, "<text x=\"%g\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">", W / 2);
    put_text(f, title);
    fputs("</text>\n", f);
    fprintf(f, "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"none\" stroke=\"#444\"/>\n", L, T,
            W - L - R, H - T - B);
    for (int k = 0; k <= 5; k++) {
        double xv = x0 + (x1 - x0) * k / 5, yv = y0 + (y1 - y0) * k / 5;
        double px = L + (W - L - R) * k / 5, py = H - B - (H - T - B) * k / 5;
        fprintf(f, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"#ddd\"/>\n", L, py, W - R, py);
        fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">%.4g</text>\n", px, H - B + 16, xv);
        if (log_y) fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"end\">%.3g</text>\n", L - 5, py + 4, pow(10, yv));
        else fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"end\">%.4g</text>\n", L - 5, py + 4, yv);
    }
    fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">", (L + W - R) / 2, H - 15);
    put_text(f, xlabel);
    fprintf(f, "</text>\n<text transform=\"translate(16,%g) rotate(-90)\" text-anchor=\"middle\">", (T + H - B) / 2);
    put_text(f, ylabel);
    fprintf(f, "%s</text>\n", log_y ? " (log scale)" : "");
    for (int s = 0; s < n_series; s++) {
        const char *c = colors[s % 6];
        if (!series[s].points) fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\" points=\"", c);
        for (int i = 0; i < series[s].n; i++) {
            double y = yval(series[s].y[i], log_y);
            if (!isfinite(series[s].x[i]) || !isfinite(y)) continue;
            double px = L + (W - L - R) * (series[s].x[i] - x0) / (x1 - x0);
            double py = H - B - (H - T - B) * (y - y0) / (y1 - y0);
            if (series[s].points) fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2\" fill=\"%s\"/>\n", px, py, c);
            else fprintf(f, "%.1f,%.1f ", px, py);
        }
        if (!series[s].points) fprintf(f, "\"/>\n");
        fprintf(f, "<rect x=\"%g\" y=\"%g\" width=\"12\" height=\"3\" fill=\"%s\"/>", W - R - 170, T + 12 + 16.0 * s, c);
        fprintf(f, "<text x=\"%g\" y=\"%g\">", W - R - 152, T + 17 + 16.0 * s);
        put_text(f, series[s].label);
        fputs("</text>\n", f);
    }
    fprintf(f, "</svg>\n");
    return fclose(f) == 0 ? 0 : -1;
}

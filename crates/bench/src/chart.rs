//! The hand-written SVG chart: one panel per scenario, grouped bars of TPS
//! per variant (e.g. query mode) for the three targets, with axes, grid,
//! legend and the value on every bar. No plotting crate, just text.

use std::fmt::Write as _;

use crate::scenarios::{ScenarioReport, Target};

const WIDTH: f64 = 900.0;
const HEADER: f64 = 110.0;
const PANEL: f64 = 380.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 20.0;
const FONT: &str = "font-family=\"Helvetica, Arial, sans-serif\"";

/// Fill colour of a target's bars (and lines in the scaling chart).
pub fn colour(t: Target) -> &'static str {
    match t {
        Target::Direct => "#4c72b0",
        Target::Pgbouncer => "#dd8452",
        Target::Pgcoalesce => "#55a868",
        Target::PgcoalesceImmediate => "#8172b3",
        Target::PgcoalesceReplica => "#c44e52",
        Target::PgcoalesceReplicaRywOff => "#937860",
    }
}

/// Escapes text for SVG.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `text` cut to at most `max` characters, with an ellipsis when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A share as a percentage: one decimal under 10 % (`0.2%`), none above.
fn percent(share: f64) -> String {
    let p = share * 100.0;
    if p < 10.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

/// `12345.6` -> `12,346`.
pub fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A tick step of 1, 2, 2.5 or 5 times a power of ten, about `raw`.
pub fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let m = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 2.5 {
        2.5
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// The whole chart; `subtitle` lines go under the title (date, machine,
/// settings). Reports drawn as lines ([`ScenarioReport::line_chart`]) are
/// left out (see `linechart.rs`).
pub fn render(reports: &[ScenarioReport], subtitle: &[String]) -> String {
    let reports: Vec<&ScenarioReport> = reports
        .iter()
        .filter(|r| !r.line_chart && !r.groups.is_empty())
        .collect();
    // The legend shows the targets that appear (the pooling ones if none).
    let mut targets: Vec<Target> = Target::EVERY
        .into_iter()
        .filter(|t| {
            reports.iter().any(|r| {
                r.groups
                    .iter()
                    .any(|g| g.runs.iter().any(|run| run.target == *t))
            })
        })
        .collect();
    if targets.is_empty() {
        targets = Target::POOLING.to_vec();
    }
    let header = HEADER + legend_extra_height(targets.len());
    let height = header + PANEL * reports.len().max(1) as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" {FONT}>"
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"28\" font-size=\"20\" font-weight=\"bold\" text-anchor=\"middle\">\
         pgcoalesce benchmark: transactions per second (higher is better)</text>",
        WIDTH / 2.0
    );
    for (i, line) in subtitle.iter().take(2).enumerate() {
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"#555\" \
             text-anchor=\"middle\">{}</text>",
            WIDTH / 2.0,
            50 + 16 * i,
            esc(line)
        );
    }
    legend(&mut s, 96.0, &targets, reports.iter().any(|r| r.coalescing));
    for (i, r) in reports.iter().enumerate() {
        panel(&mut s, r, header + PANEL * i as f64);
    }
    s.push_str("</svg>\n");
    s
}

/// Legend entries per row: all of them up to four, else half (rounded up).
fn legend_per_row(n: usize) -> usize {
    if n <= 4 {
        n.max(1)
    } else {
        n.div_ceil(2)
    }
}

/// Height the legend of `n` targets needs beyond its first row.
pub fn legend_extra_height(n: usize) -> f64 {
    const ROW: f64 = 20.0;
    ROW * (n.div_ceil(legend_per_row(n)).max(1) - 1) as f64
}

/// The colour key of `targets`, centred, its first row at height `y`;
/// pgcoalesce's ack mode is spelled out when `coalescing`.
pub fn legend(s: &mut String, y: f64, targets: &[Target], coalescing: bool) {
    let per_row = legend_per_row(targets.len());
    let cap = if targets.len() <= 4 { 190.0 } else { 240.0 };
    let item = ((WIDTH - 40.0) / per_row as f64).min(cap);
    for (i, t) in targets.iter().enumerate() {
        let row = targets[i - i % per_row..].len().min(per_row);
        let start = WIDTH / 2.0 - item * row as f64 / 2.0;
        let x = start + item * (i % per_row) as f64;
        let y = y + 20.0 * (i / per_row) as f64;
        let _ = writeln!(
            s,
            "<rect x=\"{x}\" y=\"{}\" width=\"14\" height=\"14\" fill=\"{}\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"13\">{}</text>",
            y - 11.0,
            colour(*t),
            x + 20.0,
            y,
            t.title(coalescing)
        );
    }
}

/// One scenario's panel with its top edge at `top`.
fn panel(s: &mut String, r: &ScenarioReport, top: f64) {
    let (x0, x1) = (LEFT, WIDTH - RIGHT);
    let (y0, y1) = (top + 50.0, top + PANEL - 60.0);
    let (pw, ph) = (x1 - x0, y1 - y0);
    let _ = writeln!(
        s,
        "<text x=\"{x0}\" y=\"{}\" font-size=\"15\" font-weight=\"bold\">{}</text>\
         <text x=\"{x0}\" y=\"{}\" font-size=\"11\" fill=\"#555\">{}</text>",
        top + 18.0,
        esc(&r.title),
        top + 34.0,
        esc(&shorten(&r.description, 135))
    );

    let max = r
        .groups
        .iter()
        .flat_map(|g| g.runs.iter().filter_map(|run| run.tps()))
        .fold(0.0f64, f64::max);
    let step = nice_step(max * 1.1 / 5.0);
    let ymax = ((max * 1.1 / step).ceil() * step).max(step);
    let y_of = |v: f64| y1 - v / ymax * ph;

    // Grid and y axis labels.
    let mut v = 0.0;
    while v <= ymax + step / 2.0 {
        let y = y_of(v);
        let _ = writeln!(
            s,
            "<line x1=\"{x0}\" y1=\"{y:.1}\" x2=\"{x1}\" y2=\"{y:.1}\" stroke=\"#e3e3e3\"/>\
             <text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            x0 - 6.0,
            y + 4.0,
            thousands(v)
        );
        v += step;
    }
    let _ = writeln!(
        s,
        "<line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x0}\" y2=\"{y1}\" stroke=\"#333\"/>\
         <line x1=\"{x0}\" y1=\"{y1}\" x2=\"{x1}\" y2=\"{y1}\" stroke=\"#333\"/>"
    );
    let (lx, ly) = (22.0, (y0 + y1) / 2.0);
    let _ = writeln!(
        s,
        "<text x=\"{lx}\" y=\"{ly}\" font-size=\"12\" text-anchor=\"middle\" \
         transform=\"rotate(-90 {lx} {ly})\">transactions / s</text>"
    );

    // Bars.
    let n = r.groups.len().max(1) as f64;
    let gw = pw / n;
    let per_group = r.groups.iter().map(|g| g.runs.len()).max().unwrap_or(1);
    let bw = gw * 0.78 / per_group.max(1) as f64;
    for (gi, g) in r.groups.iter().enumerate() {
        let gx = x0 + gw * gi as f64 + gw * 0.11;
        for (ti, run) in g.runs.iter().enumerate() {
            let x = gx + bw * ti as f64;
            let cx = x + bw / 2.0;
            match run.tps() {
                Some(tps) => {
                    let y = y_of(tps);
                    let _ = writeln!(
                        s,
                        "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
                         fill=\"{}\"><title>{} {}: {:.0} tps</title></rect>\
                         <text x=\"{cx:.1}\" y=\"{:.1}\" font-size=\"11\" \
                         text-anchor=\"middle\">{}</text>",
                        x + 2.0,
                        bw - 4.0,
                        y1 - y,
                        colour(run.target),
                        esc(&g.label),
                        run.target.title(r.coalescing),
                        tps,
                        y - 4.0,
                        thousands(tps)
                    );
                    // Where the reads went, inside the bars of proxies with a replica.
                    let share = run.reads.as_ref().and_then(|r| r.replica_share);
                    if let (true, Some(share)) = (run.target.has_replica(), share) {
                        if y1 - y > 40.0 {
                            let _ = writeln!(
                                s,
                                "<text x=\"{cx:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"white\" \
                                 text-anchor=\"middle\">{} of reads</text>\
                                 <text x=\"{cx:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"white\" \
                                 text-anchor=\"middle\">on replica</text>",
                                y + 16.0,
                                percent(share),
                                y + 28.0
                            );
                        }
                    }
                }
                None => {
                    let what = if run.skipped.is_some() {
                        "skipped"
                    } else {
                        "failed"
                    };
                    let _ = writeln!(
                        s,
                        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"3\" \
                         fill=\"{}\" opacity=\"0.5\"/>\
                         <text x=\"{cx:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"#c0392b\" \
                         text-anchor=\"middle\">{what}</text>",
                        x + 2.0,
                        y1 - 3.0,
                        bw - 4.0,
                        colour(run.target),
                        y1 - 8.0
                    );
                }
            }
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"13\" text-anchor=\"middle\">{}</text>",
            x0 + gw * (gi as f64 + 0.5),
            y1 + 20.0,
            esc(&g.label)
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{}\" font-size=\"12\" fill=\"#333\" text-anchor=\"middle\">{}</text>",
        (x0 + x1) / 2.0,
        y1 + 42.0,
        esc(&r.group_axis)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_numbers() {
        assert_eq!(nice_step(3700.0), 5000.0);
        assert_eq!(nice_step(1800.0), 2000.0);
        assert_eq!(nice_step(0.0), 1.0);
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(esc("a<b&c"), "a&lt;b&amp;c");
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abc", 4), "abc");
        assert_eq!(percent(0.0021), "0.2%");
        assert_eq!(percent(1.0), "100%");
    }

    #[test]
    fn renders_empty_and_valid_looking() {
        let svg = render(&[], &["x".to_owned()]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }
}

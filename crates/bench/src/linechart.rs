//! The hand-written SVG line chart of a scenario over client counts
//! (`scaling.svg`): throughput per target, and the proxies' peak resident
//! memory, against pgbench's client count on a logarithmic axis. Points
//! carry their value; skipped or failed runs leave a gap in the line.

use std::fmt::Write as _;

use crate::chart::{colour, esc, legend, nice_step, thousands};
use crate::scenarios::{RunRecord, ScenarioReport, Target};

const WIDTH: f64 = 900.0;
const HEADER: f64 = 110.0;
const PANEL: f64 = 360.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 40.0;
const FONT: &str = "font-family=\"Helvetica, Arial, sans-serif\"";

/// One line: a target's values by group (`None` = no point).
struct Series {
    target: Target,
    values: Vec<Option<f64>>,
}

/// The chart of `report`; `subtitle` lines go under the title.
pub fn render(report: &ScenarioReport, subtitle: &[String]) -> String {
    let height = HEADER + 2.0 * PANEL;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" {FONT}>\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>"
    );
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"28\" font-size=\"20\" font-weight=\"bold\" text-anchor=\"middle\">\
         pgcoalesce benchmark: throughput vs client count</text>",
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
    let targets = targets(report);
    legend(&mut s, 96.0, &targets, true);
    let clients: Vec<u32> = report.groups.iter().map(|g| g.clients).collect();
    let series = |f: &dyn Fn(&RunRecord) -> Option<f64>, proxies_only: bool| -> Vec<Series> {
        targets
            .iter()
            .filter(|t| !proxies_only || t.is_proxy())
            .map(|&target| Series {
                target,
                values: report
                    .groups
                    .iter()
                    .map(|g| g.runs.iter().find(|r| r.target == target).and_then(f))
                    .collect(),
            })
            .collect()
    };
    panel(
        &mut s,
        HEADER,
        (
            &format!("{}: transactions (upserts) per second", report.title),
            "transactions / s",
        ),
        &clients,
        &series(&RunRecord::tps, false),
        0,
    );
    panel(
        &mut s,
        HEADER + PANEL,
        ("proxy resident memory (peak VmRSS during the run)", "MiB"),
        &clients,
        &series(&RunRecord::rss_mib, true),
        1,
    );
    s.push_str("</svg>\n");
    s
}

/// The targets present in the report, in [`Target::ALL`] order.
fn targets(report: &ScenarioReport) -> Vec<Target> {
    Target::ALL
        .into_iter()
        .filter(|t| {
            report
                .groups
                .iter()
                .any(|g| g.runs.iter().any(|r| r.target == *t))
        })
        .collect()
}

/// One panel with its top edge at `top`: `series` over `clients` (log x).
fn panel(
    s: &mut String,
    top: f64,
    (title, unit): (&str, &str),
    clients: &[u32],
    series: &[Series],
    decimals: usize,
) {
    let (x0, x1) = (LEFT, WIDTH - RIGHT);
    let (y0, y1) = (top + 40.0, top + PANEL - 60.0);
    let _ = writeln!(
        s,
        "<text x=\"{x0}\" y=\"{}\" font-size=\"15\" font-weight=\"bold\">{}</text>",
        top + 20.0,
        esc(title)
    );
    let max = series
        .iter()
        .flat_map(|l| l.values.iter().flatten())
        .fold(0.0f64, |a, &b| a.max(b));
    let step = nice_step(max * 1.1 / 5.0);
    let ymax = ((max * 1.1 / step).ceil() * step).max(step);
    let y_of = |v: f64| y1 - v / ymax * (y1 - y0);
    let logs: Vec<f64> = clients
        .iter()
        .map(|&c| f64::from(c.max(1)).log2())
        .collect();
    let (lmin, lmax) = logs
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &l| (a.min(l), b.max(l)));
    let span = if lmax > lmin { lmax - lmin } else { 1.0 };
    let x_of = |i: usize| {
        if logs.len() == 1 {
            (x0 + x1) / 2.0
        } else {
            x0 + 30.0 + (logs[i] - lmin) / span * (x1 - x0 - 60.0)
        }
    };

    let mut v = 0.0;
    while v <= ymax + step / 2.0 {
        let y = y_of(v);
        let label = if decimals == 0 {
            thousands(v)
        } else {
            format!("{v:.0}")
        };
        let _ = writeln!(
            s,
            "<line x1=\"{x0}\" y1=\"{y:.1}\" x2=\"{x1}\" y2=\"{y:.1}\" stroke=\"#e3e3e3\"/>\
             <text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{label}</text>",
            x0 - 6.0,
            y + 4.0
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
         transform=\"rotate(-90 {lx} {ly})\">{}</text>",
        esc(unit)
    );
    for (i, c) in clients.iter().enumerate() {
        let x = x_of(i);
        let _ = writeln!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{y1}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#333\"/>\
             <text x=\"{x:.1}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{}</text>",
            y1 + 5.0,
            y1 + 20.0,
            thousands(f64::from(*c))
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{}\" font-size=\"12\" fill=\"#333\" text-anchor=\"middle\">\
         client connections (pgbench -c, logarithmic)</text>",
        (x0 + x1) / 2.0,
        y1 + 42.0
    );

    for line in series {
        let c = colour(line.target);
        // Consecutive present points form one polyline; gaps split it.
        let mut run: Vec<(f64, f64)> = Vec::new();
        let flush = |s: &mut String, run: &mut Vec<(f64, f64)>| {
            if run.len() > 1 {
                let pts: Vec<String> = run.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                let _ = writeln!(
                    s,
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2.5\"/>",
                    pts.join(" ")
                );
            }
            run.clear();
        };
        for (i, v) in line.values.iter().enumerate() {
            match v {
                Some(v) => run.push((x_of(i), y_of(*v))),
                None => flush(s, &mut run),
            }
        }
        flush(s, &mut run);
        for (i, v) in line.values.iter().enumerate() {
            let Some(v) = v else { continue };
            let (x, y) = (x_of(i), y_of(*v));
            let text = if decimals == 0 {
                thousands(*v)
            } else {
                format!("{v:.1}")
            };
            let _ = writeln!(
                s,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"{c}\">\
                 <title>{} at {} clients: {text}</title></circle>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"{c}\" \
                 text-anchor=\"middle\">{text}</text>",
                line.target.title(true),
                clients[i],
                y - 8.0
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_empty_report() {
        let r = ScenarioReport {
            name: "scaling".into(),
            title: "t".into(),
            description: String::new(),
            group_axis: String::new(),
            coalescing: true,
            line_chart: true,
            flusher: None,
            groups: Vec::new(),
        };
        let svg = render(&r, &[]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }
}

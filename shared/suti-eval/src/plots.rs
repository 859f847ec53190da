//! The reports' figures as SVG written here, with no script or library behind them: each method's
//! scores with their 95 % whiskers, the training loss curves, the filter's acceptance by reason
//! and the time per subject. Every number drawn is also written beside its mark (as a label or a
//! `<title>` tooltip), so a reader can check the plot against the tables.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::protocol::{EvalReport, MethodRow};
use crate::report::html_escape;
use crate::stats::Estimate;

pub use suti_factory::training::LossPoint;

/// A named loss curve (`base`, `experts (mean of 12)`, `apprentice`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossCurve {
    /// What was trained.
    pub label: String,
    /// Its points, by step.
    pub points: Vec<LossPoint>,
}

/// What the pipeline did before the evaluation, for the reports' plots (the demo fills it in;
/// `suti eval` alone does not know it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineFigures {
    /// Training loss curves: base, experts, apprentice.
    pub loss_curves: Vec<LossCurve>,
    /// Candidates the filter accepted, then rejected by reason: (`accepted`, n), (reason, n)…
    pub filter_verdicts: Vec<(String, u64)>,
}

const WIDTH: f64 = 720.0;
const LABEL_WIDTH: f64 = 270.0;
const ROW_HEIGHT: f64 = 24.0;
const COLOURS: [&str; 4] = ["#1f5fa8", "#c4581a", "#2f8a3a", "#7a3fa0"];

fn svg_open(height: f64, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot\" width=\"{WIDTH}\" \
         height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" \
         font-family=\"system-ui,sans-serif\" font-size=\"12\"><title>{}</title>\
         <text x=\"0\" y=\"14\" font-weight=\"bold\">{}</text>",
        html_escape(title),
        html_escape(title)
    )
}

/// Tick values from `lo` to `hi`, about five of them at a round step.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).abs().max(1e-12);
    let raw = span / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| span / s <= 6.0)
        .unwrap_or(10.0 * magnitude);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

/// A tick value as short as it reads well: `10`, `2.5`, `0.125`.
fn short(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        return format!("{v:.0}");
    }
    let digits = if v.abs() >= 1.0 { 2 } else { 3 };
    let text = format!("{v:.digits$}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// How an axis prints its ticks.
#[derive(Clone, Copy)]
enum TickFormat {
    /// As they are.
    Plain,
    /// Fractions as percentages (`0.25` → `25 %`).
    Percent,
}

impl TickFormat {
    fn text(self, v: f64) -> String {
        match self {
            Self::Plain => short(v),
            Self::Percent => format!("{} %", short(v * 100.0)),
        }
    }
}

/// A horizontal axis across `[x0, x1]` for values `[lo, hi]`, with grid lines down to `bottom`.
fn x_axis(
    svg: &mut String,
    (x0, x1): (f64, f64),
    (lo, hi): (f64, f64),
    (top, bottom): (f64, f64),
    format: TickFormat,
) {
    let scale = |v: f64| x0 + (v - lo) / (hi - lo) * (x1 - x0);
    for t in ticks(lo, hi) {
        let x = scale(t);
        let _ = write!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\" stroke=\"#e3e3e3\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
            bottom + 14.0,
            format.text(t)
        );
    }
}

/// One panel per metric: each method's mean as a dot with its 95 % interval as a whisker, and the
/// figures written at the right. Methods without the metric are left out of its panel.
pub fn scores_svg(report: &EvalReport) -> String {
    type Pick = fn(&MethodRow) -> Option<&Estimate>;
    // (name, the column, whether the table prints it as a percentage)
    let metrics: [(&str, Pick, bool); 3] = [
        ("margin", |r| r.margin.as_ref(), false),
        ("identification", |r| r.identification.as_ref(), true),
        ("CLIP-T", |r| r.clip_t.as_ref(), false),
    ];
    type Panel<'a> = (&'a str, bool, Vec<(&'a str, Estimate)>);
    let panels: Vec<Panel> = metrics
        .iter()
        .map(|(name, pick, percent)| {
            let rows: Vec<(&str, Estimate)> = report
                .rows
                .iter()
                .filter_map(|r| pick(r).map(|e| (r.label.as_str(), *e)))
                .collect();
            (*name, *percent, rows)
        })
        .filter(|(_, _, rows)| !rows.is_empty())
        .collect();
    let height = 24.0
        + panels
            .iter()
            .map(|(_, _, rows)| 30.0 + ROW_HEIGHT * rows.len() as f64 + 22.0)
            .sum::<f64>();
    let mut svg = svg_open(height, "Scores by method: mean and 95 % interval");
    let (x0, x1) = (LABEL_WIDTH, WIDTH - 170.0);
    let mut y = 24.0;
    for (name, percent, rows) in &panels {
        let lo = rows.iter().map(|(_, e)| e.lo).fold(f64::INFINITY, f64::min);
        let hi = rows
            .iter()
            .map(|(_, e)| e.hi)
            .fold(f64::NEG_INFINITY, f64::max);
        let pad = ((hi - lo) * 0.05).max(1e-3);
        let (lo, hi) = (lo - pad, hi + pad);
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{:.1}\" font-weight=\"bold\">{}</text>",
            y + 18.0,
            html_escape(name)
        );
        let top = y + 26.0;
        let bottom = top + ROW_HEIGHT * rows.len() as f64;
        let format = if *percent {
            TickFormat::Percent
        } else {
            TickFormat::Plain
        };
        x_axis(&mut svg, (x0, x1), (lo, hi), (top, bottom), format);
        if lo < 0.0 && hi > 0.0 {
            let zero = x0 + (0.0 - lo) / (hi - lo) * (x1 - x0);
            let _ = write!(
                svg,
                "<line x1=\"{zero:.1}\" y1=\"{top:.1}\" x2=\"{zero:.1}\" y2=\"{bottom:.1}\" \
                 stroke=\"#888\" stroke-dasharray=\"3 3\"/>"
            );
        }
        let scale = |v: f64| x0 + (v - lo) / (hi - lo) * (x1 - x0);
        for (k, (label, e)) in rows.iter().enumerate() {
            let cy = top + ROW_HEIGHT * (k as f64 + 0.5);
            let colour = COLOURS[k % COLOURS.len()];
            // The figure as the table prints it.
            let figure = if *percent {
                e.format_percent()
            } else {
                e.format(3)
            };
            let _ = write!(
                svg,
                "<g class=\"score\" data-metric=\"{name}\" data-method=\"{label}\" \
                 data-mean=\"{mean}\" data-lo=\"{elo}\" data-hi=\"{ehi}\">\
                 <title>{label}: {name} {figure}</title>\
                 <text x=\"{lx:.1}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text>\
                 <line x1=\"{a:.1}\" y1=\"{cy:.1}\" x2=\"{b:.1}\" y2=\"{cy:.1}\" stroke=\"{colour}\" stroke-width=\"2\"/>\
                 <line x1=\"{a:.1}\" y1=\"{w0:.1}\" x2=\"{a:.1}\" y2=\"{w1:.1}\" stroke=\"{colour}\" stroke-width=\"2\"/>\
                 <line x1=\"{b:.1}\" y1=\"{w0:.1}\" x2=\"{b:.1}\" y2=\"{w1:.1}\" stroke=\"{colour}\" stroke-width=\"2\"/>\
                 <circle cx=\"{m:.1}\" cy=\"{cy:.1}\" r=\"4\" fill=\"{colour}\"/>\
                 <text x=\"{fx:.1}\" y=\"{ty:.1}\" fill=\"#333\">{figure}</text></g>",
                name = html_escape(name),
                label = html_escape(label),
                mean = e.mean,
                elo = e.lo,
                ehi = e.hi,
                lx = x0 - 8.0,
                ty = cy + 4.0,
                a = scale(e.lo),
                b = scale(e.hi),
                m = scale(e.mean),
                w0 = cy - 5.0,
                w1 = cy + 5.0,
                fx = x1 + 10.0,
            );
        }
        y = bottom + 22.0;
    }
    svg.push_str("</svg>");
    svg
}

/// Horizontal bars of `values` (label, value, the figure to print), longest first kept in order.
fn bars_svg(title: &str, values: &[(String, f64, String)], class: &str) -> String {
    let height = 30.0 + ROW_HEIGHT * values.len() as f64 + 24.0;
    let mut svg = svg_open(height, title);
    let (x0, x1) = (LABEL_WIDTH, WIDTH - 120.0);
    let hi = values.iter().map(|(_, v, _)| *v).fold(0.0, f64::max);
    let hi = if hi > 0.0 { hi * 1.05 } else { 1.0 };
    let top = 26.0;
    let bottom = top + ROW_HEIGHT * values.len() as f64;
    x_axis(
        &mut svg,
        (x0, x1),
        (0.0, hi),
        (top, bottom),
        TickFormat::Plain,
    );
    for (k, (label, value, figure)) in values.iter().enumerate() {
        let y = top + ROW_HEIGHT * k as f64 + 4.0;
        let w = (value / hi * (x1 - x0)).max(0.0);
        let _ = write!(
            svg,
            "<g class=\"{class}\" data-label=\"{label}\" data-value=\"{value}\">\
             <title>{label}: {figure}</title>\
             <text x=\"{lx:.1}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text>\
             <rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{colour}\"/>\
             <text x=\"{fx:.1}\" y=\"{ty:.1}\" fill=\"#333\">{figure}</text></g>",
            label = html_escape(label),
            figure = html_escape(figure),
            lx = x0 - 8.0,
            ty = y + 12.0,
            h = ROW_HEIGHT - 8.0,
            colour = COLOURS[k % COLOURS.len()],
            fx = x0 + w + 6.0,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Each method's evaluation time per subject (the real images cost nothing and are left out).
pub fn time_per_subject_svg(report: &EvalReport) -> String {
    let values: Vec<(String, f64, String)> = report
        .rows
        .iter()
        .filter(|r| r.method != crate::protocol::Method::RealImages)
        .map(|r| {
            (
                r.label.clone(),
                r.seconds_per_subject,
                format!("{:.1} s", r.seconds_per_subject),
            )
        })
        .collect();
    bars_svg("Time per subject (seconds)", &values, "time")
}

/// The filter's verdicts: accepted, then each rejection reason, with counts and shares.
pub fn filter_verdicts_svg(verdicts: &[(String, u64)]) -> String {
    let total: u64 = verdicts.iter().map(|(_, n)| n).sum();
    let values: Vec<(String, f64, String)> = verdicts
        .iter()
        .map(|(label, n)| {
            let share = 100.0 * *n as f64 / total.max(1) as f64;
            (
                label.replace('_', " "),
                *n as f64,
                format!("{n} ({share:.0} %)"),
            )
        })
        .collect();
    bars_svg(
        &format!("ΔCLIP filter: {total} candidates by verdict"),
        &values,
        "verdict",
    )
}

/// One small panel per loss curve (their steps and scales differ), each with its first and last
/// values written at the ends.
pub fn loss_curves_svg(curves: &[LossCurve]) -> String {
    let curves: Vec<&LossCurve> = curves.iter().filter(|c| !c.points.is_empty()).collect();
    let panel_h = 150.0;
    let height = 24.0 + curves.len() as f64 * (panel_h + 40.0);
    let mut svg = svg_open(height, "Training loss by step");
    let (x0, x1) = (70.0, WIDTH - 120.0);
    for (k, curve) in curves.iter().enumerate() {
        let top = 24.0 + k as f64 * (panel_h + 40.0) + 22.0;
        let bottom = top + panel_h;
        let colour = COLOURS[k % COLOURS.len()];
        let (s0, s1) = (
            curve.points.first().map_or(0, |p| p.step) as f64,
            curve.points.last().map_or(1, |p| p.step) as f64,
        );
        let s1 = if s1 > s0 { s1 } else { s0 + 1.0 };
        let lo = curve
            .points
            .iter()
            .map(|p| f64::from(p.loss))
            .fold(f64::INFINITY, f64::min);
        let hi = curve
            .points
            .iter()
            .map(|p| f64::from(p.loss))
            .fold(f64::NEG_INFINITY, f64::max);
        let pad = ((hi - lo) * 0.08).max(1e-4);
        let (lo, hi) = ((lo - pad).max(0.0), hi + pad);
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{:.1}\" font-weight=\"bold\">{}</text>",
            top - 6.0,
            html_escape(&curve.label)
        );
        let y = |v: f64| bottom - (v - lo) / (hi - lo) * panel_h;
        let x = |s: f64| x0 + (s - s0) / (s1 - s0) * (x1 - x0);
        for t in ticks(lo, hi) {
            let _ = write!(
                svg,
                "<line x1=\"{x0:.1}\" y1=\"{yy:.1}\" x2=\"{x1:.1}\" y2=\"{yy:.1}\" stroke=\"#e3e3e3\"/>\
                 <text x=\"{tx:.1}\" y=\"{ty:.1}\" text-anchor=\"end\" fill=\"#555\">{}</text>",
                short(t),
                yy = y(t),
                tx = x0 - 6.0,
                ty = y(t) + 4.0,
            );
        }
        for t in ticks(s0, s1) {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
                x(t),
                bottom + 14.0,
                short(t)
            );
        }
        let path: Vec<String> = curve
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.step as f64), y(f64::from(p.loss))))
            .collect();
        // Per-step losses are noisy (each batch draws its own noise levels): a running mean over
        // a twentieth of the points is drawn over them.
        let window = (curve.points.len() / 20).max(1);
        let smooth: Vec<String> = (0..curve.points.len())
            .map(|k| {
                let from = k.saturating_sub(window / 2);
                let to = (k + window.div_ceil(2)).min(curve.points.len());
                let stretch = &curve.points[from..to];
                let mean =
                    stretch.iter().map(|p| f64::from(p.loss)).sum::<f64>() / stretch.len() as f64;
                format!("{:.1},{:.1}", x(curve.points[k].step as f64), y(mean))
            })
            .collect();
        let first = curve.points.first().expect("not empty");
        let last = curve.points.last().expect("not empty");
        let _ = write!(
            svg,
            "<g class=\"loss\" data-label=\"{label}\" data-first=\"{f}\" data-last=\"{l}\" \
             data-points=\"{n}\"><title>{label}: loss {f:.4} at step {fs} → {l:.4} at step {ls}</title>\
             <polyline fill=\"none\" stroke=\"{colour}\" stroke-opacity=\"0.35\" stroke-width=\"1\" points=\"{pts}\"/>\
             <polyline class=\"smoothed\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{smooth}\"/>\
             <text x=\"{lx:.1}\" y=\"{ly:.1}\" fill=\"#333\">{l:.4}</text></g>",
            label = html_escape(&curve.label),
            f = first.loss,
            l = last.loss,
            fs = first.step,
            ls = last.step,
            n = curve.points.len(),
            pts = path.join(" "),
            smooth = smooth.join(" "),
            lx = x1 + 6.0,
            ly = y(f64::from(last.loss)) + 4.0,
        );
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">step</text>",
            x1,
            bottom + 28.0
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Every plot the report can draw, as HTML: the scores and the time per subject always, the
/// loss curves and the filter's verdicts when the pipeline's figures are known.
pub fn plots_html(report: &EvalReport) -> String {
    let mut html = String::from("<h2>Plots</h2><div class=\"plots\">");
    html.push_str(&scores_svg(report));
    if let Some(figures) = &report.pipeline {
        if figures.loss_curves.iter().any(|c| !c.points.is_empty()) {
            html.push_str(&loss_curves_svg(&figures.loss_curves));
        }
        if !figures.filter_verdicts.is_empty() {
            html.push_str(&filter_verdicts_svg(&figures.filter_verdicts));
        }
    }
    html.push_str(&time_per_subject_svg(report));
    html.push_str("</div>");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            ticks(0.0, 1.0),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        let t = ticks(-0.013, 0.042);
        assert!(
            t.first().unwrap() >= &-0.013 && t.last().unwrap() <= &0.042,
            "{t:?}"
        );
        assert!(t.len() >= 3, "{t:?}");
    }

    #[test]
    fn ticks_read_short() {
        assert_eq!(short(10.0), "10");
        assert_eq!(short(2.5), "2.5");
        assert_eq!(short(0.125), "0.125");
        assert_eq!(short(-0.02), "-0.02");
        assert_eq!(TickFormat::Percent.text(0.4), "40 %");
    }

    #[test]
    fn filter_bars_print_counts_and_shares() {
        let svg = filter_verdicts_svg(&[
            ("accepted".into(), 30),
            ("prompt_not_followed".into(), 50),
            ("subject_lost".into(), 20),
        ]);
        assert!(svg.contains("100 candidates"), "{svg}");
        assert!(
            svg.contains("30 (30 %)") && svg.contains("prompt not followed"),
            "{svg}"
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }
}

//! The evaluation's outputs: the table and the lead table as markdown and HTML (every figure with
//! its 95 % interval; a lead whose interval holds zero reads "no difference"), `eval.json`, one
//! contact sheet per subject and `eval.html`.

use std::path::Path;

use crate::protocol::{EvalReport, Lead, Method, MethodRow, SubjectSheet};
use crate::stats::Estimate;
use crate::{EvalError, Result};

fn cell(e: Option<&Estimate>, percent: bool) -> String {
    match e {
        None => "—".into(),
        Some(e) if percent => e.format_percent(),
        Some(e) => e.format(3),
    }
}

fn lead_cell(e: Option<&Estimate>, percent: bool) -> String {
    match e {
        None => "—".into(),
        Some(e) if e.holds_zero() => format!("no difference ({})", cell(Some(e), percent)),
        Some(e) => cell(Some(e), percent),
    }
}

fn seconds(row: &MethodRow) -> String {
    if row.method == Method::RealImages {
        "—".into()
    } else {
        format!("{:.1} s", row.seconds_per_subject)
    }
}

const COLUMNS: [&str; 10] = [
    "method",
    "subjects",
    "margin",
    "identification",
    "instance",
    "similarity",
    "CLIP-I",
    "CLIP-T",
    "time per subject",
    "images",
];

fn row_cells(row: &MethodRow) -> Vec<String> {
    vec![
        row.label.clone(),
        row.subjects.to_string(),
        cell(row.margin.as_ref(), false),
        cell(row.identification.as_ref(), true),
        cell(row.instance.as_ref(), true),
        cell(row.similarity.as_ref(), false),
        cell(row.clip_i.as_ref(), false),
        cell(row.clip_t.as_ref(), false),
        seconds(row),
        row.images.to_string(),
    ]
}

const LEAD_COLUMNS: [&str; 6] = [
    "lead",
    "subjects",
    "margin",
    "identification",
    "instance",
    "CLIP-T",
];

fn lead_cells(lead: &Lead) -> Vec<String> {
    vec![
        lead.name.clone(),
        lead.subjects.to_string(),
        lead_cell(lead.margin.as_ref(), false),
        lead_cell(lead.identification.as_ref(), true),
        lead_cell(lead.instance.as_ref(), true),
        lead_cell(lead.clip_t.as_ref(), false),
    ]
}

fn md_table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut md = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for cells in rows {
        md.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    md
}

/// What the figures are, in one paragraph under the tables.
pub fn legend(report: &EvalReport) -> String {
    format!(
        "Means over subjects with 95 % paired-bootstrap intervals. margin: similarity to the \
         subject's demonstrations minus the mean similarity to {} distractors' demonstrations{} \
         (subject encoder: {}; centred on {}). identification: share of images whose nearest \
         demonstration set among {} candidates is the subject's (chance {:.0} %). instance: share \
         nearer the subject's own drawing than the other drawing of its class (chance 50 %). \
         CLIP-I, CLIP-T: {}. {}",
        report.candidates.saturating_sub(1),
        if report.matched_contexts {
            ", rendered in the subject's own scenes from its seeds"
        } else {
            ""
        },
        report.subject_encoder,
        report.centring,
        report.candidates,
        100.0 / report.candidates.max(1) as f64,
        report.scorer,
        if report.expert_subjects == 0 {
            "The expert did not run.".to_string()
        } else {
            format!(
                "The expert ran on {} of {} subjects; leads involving it compare those subjects \
                 only.",
                report.expert_subjects,
                report.subjects.len()
            )
        },
    )
}

/// The method table as markdown.
pub fn markdown_table(report: &EvalReport) -> String {
    md_table(&COLUMNS, report.rows.iter().map(row_cells))
}

/// The lead table as markdown.
pub fn markdown_leads(report: &EvalReport) -> String {
    md_table(&LEAD_COLUMNS, report.leads.iter().map(lead_cells))
}

/// Both tables and the legend, as `eval.md` holds them.
pub fn markdown(report: &EvalReport) -> String {
    format!(
        "{}\n{}\n{}\n",
        markdown_table(report),
        markdown_leads(report),
        legend(report)
    )
}

/// `s` with the characters HTML gives meaning to escaped.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The start of a report page: doctype, title, the shared style and the heading.
pub fn html_head(title: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{0}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto}}\
         td,th{{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left}}\
         img{{image-rendering:pixelated;width:100%}}svg.plot{{display:block;max-width:100%;\
         height:auto;margin:1rem 0}}</style></head><body><h1>{0}</h1>",
        html_escape(title)
    )
}

fn html_rows(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut html = String::from("<table><tr>");
    for h in header {
        html.push_str(&format!("<th>{}</th>", html_escape(h)));
    }
    html.push_str("</tr>");
    for cells in rows {
        html.push_str("<tr>");
        for c in cells {
            html.push_str(&format!("<td>{}</td>", html_escape(&c)));
        }
        html.push_str("</tr>");
    }
    html.push_str("</table>");
    html
}

/// Both tables and the legend as HTML.
pub fn html_tables(report: &EvalReport) -> String {
    format!(
        "{}<h3>Leads</h3>{}<p>{}</p>",
        html_rows(&COLUMNS, report.rows.iter().map(row_cells)),
        html_rows(&LEAD_COLUMNS, report.leads.iter().map(lead_cells)),
        html_escape(&legend(report))
    )
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| EvalError::Io(path.to_path_buf(), e))
}

/// Writes eval.json, eval.md, `sheets/<subject>.png` and eval.html into `out`.
pub fn write_outputs(out: &Path, report: &EvalReport, sheets: &[SubjectSheet]) -> Result<()> {
    let sheets_dir = out.join("sheets");
    std::fs::create_dir_all(&sheets_dir).map_err(|e| EvalError::Io(sheets_dir.clone(), e))?;
    write(
        &out.join("eval.json"),
        &serde_json::to_vec_pretty(report).map_err(|e| EvalError::Invalid(e.to_string()))?,
    )?;
    write(&out.join("eval.md"), markdown(report).as_bytes())?;
    let escape = html_escape;
    let mut html = html_head("suti eval");
    html.push_str(&format!(
        "<p>{} — {} subjects × {} prompts × {} images; experts fine-tuned for {} steps on {} \
         subjects; apprentice release {}; {:.0} s in all.</p>",
        escape(&report.set),
        report.subjects.len(),
        report.prompts_per_subject,
        report.images_per_prompt,
        report.expert_steps,
        report.expert_subjects,
        escape(&report.apprentice_version),
        report.seconds,
    ));
    html.push_str(&html_tables(report));
    html.push_str(&crate::plots::plots_html(report));
    html.push_str(
        "<p>Each sheet: the demonstrations, then one row per method, prompt by prompt.</p>",
    );
    for sheet in sheets {
        let mut rows = vec![sheet.demos.clone()];
        rows.extend(
            sheet
                .methods
                .iter()
                .filter(|(_, images)| !images.is_empty())
                .map(|(_, images)| images.clone()),
        );
        let file = format!("sheets/{}.png", sheet.subject);
        write(
            &out.join(&file),
            &suti_data::contact::contact_sheet(&rows, 2).to_png(),
        )?;
        html.push_str(&format!(
            "<h2>{}</h2><p>{}</p><img src=\"{file}\" alt=\"{}\">",
            escape(&sheet.subject),
            sheet
                .methods
                .iter()
                .filter(|(_, images)| !images.is_empty())
                .map(|(m, _)| escape(&m.label()))
                .collect::<Vec<_>>()
                .join(" · "),
            escape(&sheet.subject)
        ));
    }
    html.push_str("</body></html>\n");
    write(&out.join("eval.html"), html.as_bytes())
}

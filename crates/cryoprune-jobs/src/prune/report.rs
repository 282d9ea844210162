//! `prune --report`: one self-contained HTML file (every image inlined, so it can be mailed or
//! archived with the job) that lets a user judge the pruning before trusting it: training
//! curves, the validation confusion matrix, probability histograms, galleries of the most
//! confident and the borderline particles of each predicted class, micrographs with kept and
//! rejected picks drawn on them, and the threshold table. The overlays are inlined as JPEG (a
//! noisy micrograph is ten times smaller so) and written as PNGs in a folder beside the report,
//! for a closer look.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use cryoprune_formats::atomic::write_atomic;
use cryoprune_formats::read_micrograph;
use cryoprune_formats::PickSet;
use cryoprune_image::display::{self, Mark};
use cryoprune_image::pipeline::{Job, Pipeline};
use cryoprune_image::Image;
use cryoprune_train::metrics::Report;
use cryoprune_train::modeldir::{ModelDir, ModelSpec};
use cryoprune_train::trainer::argmax;

use super::decide::{Outcome, Rule, Summary};
use crate::{Context, Result};

/// Micrographs drawn with their picks.
const OVERLAYS: usize = 6;
/// Particles per gallery row (most confident, borderline).
const GALLERY: usize = 12;

pub struct ReportPick {
    pub x: f64,
    pub y: f64,
    /// None when the pick could not be classified.
    pub probs: Option<Vec<f32>>,
    pub kept: bool,
}

pub struct ReportMicrograph {
    pub name: String,
    pub path: PathBuf,
    pub picks: Vec<ReportPick>,
}

pub struct Input<'a> {
    pub model_dir: &'a ModelDir,
    pub spec: &'a ModelSpec,
    pub summary: &'a Summary,
    pub picks: Vec<ReportMicrograph>,
    pub keep: &'a [usize],
}

const KEPT: [u8; 3] = [40, 220, 60];
const REJECTED: [u8; 3] = [240, 50, 40];
const UNSCORED: [u8; 3] = [160, 160, 160];

pub fn write(path: &Path, input: &Input, pipeline: &Pipeline) -> Result<()> {
    let classes = &input.spec.classes;
    let s = input.summary;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>cryoprune report</title>\
         <style>{STYLE}</style></head><body><h1>cryoprune prune report</h1>"
    );
    let _ = write!(
        html,
        "<p>Model <code>{}</code> ({}{}, classes {}). Kept: <b>{}</b> by {}.</p>",
        esc(&input.model_dir.path.display().to_string()),
        esc(&input.spec.network.arch.to_string()),
        if s.context.is_empty() {
            String::new()
        } else {
            format!(" with {}", esc(&s.context.join(" and ")))
        },
        esc(&classes.join(", ")),
        esc(&s.keep.join(", ")),
        match s.threshold {
            Some(t) => format!("probability &ge; {t}"),
            None => "most probable class".into(),
        }
    );
    let _ = write!(
        html,
        "<table><tr><th>picks</th><th>kept</th><th>rejected</th><th>not classified</th>\
         <th>micrographs</th><th>seconds</th><th>particles/s</th></tr>\
         <tr><td>{}</td><td>{} ({:.1}%)</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td>\
         <td>{:.0}</td></tr></table>",
        s.picks,
        s.kept,
        100.0 * s.kept as f64 / s.picks.max(1) as f64,
        s.rejected,
        s.unscored.values().sum::<usize>(),
        s.per_micrograph.len(),
        s.seconds,
        s.particles_per_second
    );
    for w in &s.warnings {
        let _ = write!(html, "<p class=\"warn\">warning: {}</p>", esc(w));
    }

    html.push_str("<h2>Training</h2>");
    match input.model_dir.curves_png() {
        Some(bytes) => push_png(&mut html, &bytes, "training curves", ""),
        None => html.push_str("<p>The model directory has no curves.png.</p>"),
    }
    match input.spec.training.validation.as_ref().filter(|r| r.n > 0) {
        Some(r) => confusion(&mut html, r),
        None => html.push_str("<p>No validation picks were kept with the model.</p>"),
    }

    html.push_str("<h2>Probabilities</h2>");
    let mut per_class: Vec<Vec<f64>> = vec![Vec::new(); classes.len()];
    for p in input.picks.iter().flat_map(|m| &m.picks) {
        if let Some(pr) = &p.probs {
            for (c, v) in pr.iter().enumerate() {
                per_class[c].push(f64::from(*v));
            }
        }
    }
    let marked = s.threshold.filter(|_| input.keep.len() == 1);
    let hist = cryoprune_train::plot::probability_histograms(classes, &per_class, marked)?;
    push_png(&mut html, &hist, "probability histograms", "");

    html.push_str("<h2>Particles by predicted class</h2>");
    galleries(&mut html, input, pipeline)?;

    html.push_str("<h2>Micrographs</h2><p>Green: kept; red: rejected; grey: not classified.</p>");
    let overlay_dir = overlay_folder(path);
    overlays(&mut html, input, &overlay_dir)?;

    if let Some(a) = &s.threshold_advice {
        let _ = write!(
            html,
            "<h2>Threshold advisor</h2><p>From {} labelled picks of the kept classes and {} \
             others; {:.0}% of picks assumed kept-class ({}).</p>\
             <table><tr><th>threshold</th><th>precision</th><th>recall</th><th>kept</th></tr>",
            a.positives,
            a.negatives,
            100.0 * a.prevalence,
            esc(&a.prevalence_source)
        );
        for r in &a.rows {
            let mark = if a.recommended.is_some_and(|x| x.threshold == r.threshold) {
                " class=\"pick\""
            } else {
                ""
            };
            let _ = write!(
                html,
                "<tr{mark}><td>{:.2}</td><td>{:.3}</td><td>{:.3}</td><td>{:.0}%</td></tr>",
                r.threshold,
                r.precision,
                r.true_positive_rate,
                100.0 * r.kept_fraction
            );
        }
        html.push_str("</table>");
        let _ = match &a.recommended {
            Some(r) => write!(
                html,
                "<p>For precision &ge; {:.2}: <code>--threshold {:.2}</code> (estimated recall {:.2}).</p>",
                a.target_precision, r.threshold, r.true_positive_rate
            ),
            None => write!(
                html,
                "<p>No threshold reaches precision {:.2} on these labels.</p>",
                a.target_precision
            ),
        };
    }

    html.push_str(
        "<h2>Per micrograph</h2><table><tr><th>micrograph</th><th>picks</th><th>kept</th>",
    );
    for c in classes {
        let _ = write!(html, "<th>{}</th>", esc(c));
    }
    html.push_str("</tr>");
    for m in &s.per_micrograph {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td>",
            esc(&m.micrograph),
            m.picks,
            m.kept
        );
        for c in classes {
            let _ = write!(
                html,
                "<td>{}</td>",
                m.per_class.get(c).copied().unwrap_or(0)
            );
        }
        html.push_str("</tr>");
    }
    html.push_str("</table></body></html>\n");
    write_atomic(path, |w| w.write_all(html.as_bytes()))?;
    Ok(())
}

/// `report.html` → `report_overlays/` beside it.
pub fn overlay_folder(report: &Path) -> PathBuf {
    let stem = report
        .file_stem()
        .map_or("report".into(), |s| s.to_string_lossy().into_owned());
    report.with_file_name(format!("{stem}_overlays"))
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}\
table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;\
text-align:right}th{background:#f2f2f2}tr.pick td{background:#dff5df;font-weight:bold}\
.warn{color:#a40}.gallery img{width:80px;height:80px;image-rendering:pixelated;margin:1px}\
.gallery figure{display:inline-block;margin:2px;font-size:11px;text-align:center}\
img.overlay{max-width:380px;margin:4px}figure{margin:4px;display:inline-block}";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn push_png(html: &mut String, png: &[u8], alt: &str, class: &str) {
    push_image(html, "png", png, alt, class);
}

fn push_image(html: &mut String, kind: &str, bytes: &[u8], alt: &str, class: &str) {
    let _ = write!(
        html,
        "<img class=\"{class}\" alt=\"{}\" src=\"data:image/{kind};base64,{}\">",
        esc(alt),
        base64::engine::general_purpose::STANDARD.encode(bytes)
    );
}

fn confusion(html: &mut String, r: &Report) {
    let _ = write!(
        html,
        "<p>Validation ({} held-out labelled picks): accuracy {:.3}, macro-F1 {:.3}.</p>\
         <table><tr><th>truth \\ predicted</th>",
        r.n, r.accuracy, r.macro_f1
    );
    for c in &r.classes {
        let _ = write!(html, "<th>{}</th>", esc(c));
    }
    html.push_str("<th>recall</th></tr>");
    for (t, row) in r.confusion.iter().enumerate() {
        let _ = write!(html, "<tr><th>{}</th>", esc(&r.classes[t]));
        for n in row {
            let _ = write!(html, "<td>{n}</td>");
        }
        let _ = write!(html, "<td>{:.3}</td></tr>", r.per_class[t].recall);
    }
    html.push_str("</table>");
}

/// The picks of a gallery: (micrograph index, pick index, caption).
type Chosen = Vec<(usize, usize, String)>;

/// For each predicted class, the most confident particles and the borderline ones (smallest
/// margin between the two most probable classes), cut again from their micrographs.
fn galleries(html: &mut String, input: &Input, pipeline: &Pipeline) -> Result<()> {
    let classes = &input.spec.classes;
    let mut rows: Vec<(String, Chosen)> = Vec::new();
    for (c, class) in classes.iter().enumerate() {
        let mut scored: Vec<(f32, f32, usize, usize)> = Vec::new();
        for (m, mic) in input.picks.iter().enumerate() {
            for (k, p) in mic.picks.iter().enumerate() {
                let Some(pr) = &p.probs else { continue };
                if argmax(pr) != c {
                    continue;
                }
                let mut sorted = pr.clone();
                sorted.sort_by(|a, b| b.total_cmp(a));
                let margin = sorted[0] - sorted.get(1).copied().unwrap_or(0.0);
                scored.push((pr[c], margin, m, k));
            }
        }
        let first = |s: &[(f32, f32, usize, usize)]| -> Chosen {
            s.iter()
                .take(GALLERY)
                .map(|&(p, _, m, k)| (m, k, format!("{p:.3}")))
                .collect()
        };
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        rows.push((format!("{class}: most confident"), first(&scored)));
        scored.sort_by(|a, b| a.1.total_cmp(&b.1));
        rows.push((format!("{class}: borderline"), first(&scored)));
    }
    let images = cut(input, pipeline, &rows)?;
    for ((title, chosen), imgs) in rows.iter().zip(images) {
        let _ = write!(html, "<h3>{}</h3><div class=\"gallery\">", esc(title));
        if chosen.is_empty() {
            html.push_str("<p>none predicted</p>");
        }
        for ((_, _, caption), img) in chosen.iter().zip(imgs) {
            html.push_str("<figure>");
            push_png(html, &img, caption, "");
            let _ = write!(html, "<figcaption>{}</figcaption></figure>", esc(caption));
        }
        html.push_str("</div>");
    }
    Ok(())
}

/// Cuts the chosen particles exactly as the network saw them (one pass per micrograph), as PNG.
fn cut(input: &Input, pipeline: &Pipeline, rows: &[(String, Chosen)]) -> Result<Vec<Vec<Vec<u8>>>> {
    let mut by_mic: std::collections::BTreeMap<usize, Vec<(usize, usize, usize)>> =
        Default::default();
    for (r, (_, chosen)) in rows.iter().enumerate() {
        for (j, &(m, k, _)) in chosen.iter().enumerate() {
            by_mic.entry(m).or_default().push((r, j, k));
        }
    }
    let order: Vec<usize> = by_mic.keys().copied().collect();
    let jobs: Vec<Job> = order
        .iter()
        .map(|&m| Job {
            path: input.picks[m].path.clone(),
            picks: by_mic[&m]
                .iter()
                .map(|&(_, _, k)| {
                    let p = &input.picks[m].picks[k];
                    (p.x, p.y)
                })
                .collect(),
        })
        .collect();
    let size = pipeline.extract.out_size;
    let mut out: Vec<Vec<Option<Vec<u8>>>> =
        rows.iter().map(|(_, c)| vec![None; c.len()]).collect();
    pipeline.run(&jobs, |o| -> Result<()> {
        let slots = &by_mic[&order[o.index]];
        for (n, &kept) in o.particles.kept.iter().enumerate() {
            let (r, j, _) = slots[kept];
            let px = &o.particles.data[n * size * size..(n + 1) * size * size];
            out[r][j] = Some(display::grey_png(px, size)?);
        }
        Ok(())
    })?;
    Ok(out
        .into_iter()
        .map(|row| row.into_iter().flatten().collect())
        .collect())
}

/// A sample of micrographs, evenly through the run, with kept and rejected picks drawn.
fn overlays(html: &mut String, input: &Input, dir: &Path) -> Result<()> {
    let with_picks: Vec<&ReportMicrograph> =
        input.picks.iter().filter(|m| !m.picks.is_empty()).collect();
    if with_picks.is_empty() {
        html.push_str("<p>No micrograph had picks.</p>");
        return Ok(());
    }
    let n = with_picks.len().min(OVERLAYS);
    // A box is about 1.5 particle diameters; circles the size of the particle crowd less.
    let radius = input.spec.preprocessing.box_size as f64 / 3.0;
    for i in 0..n {
        let mic = with_picks[i * with_picks.len() / n];
        let mut image: Image = read_micrograph(&mic.path)
            .context_with(|| format!("reading {} for the report", mic.path.display()))?
            .into();
        // As the pipeline did when classifying (and warned about then).
        cryoprune_image::pipeline::replace_nonfinite(&mut image.data);
        let marks: Vec<Mark> = mic
            .picks
            .iter()
            .map(|p| Mark {
                x: p.x,
                y: p.y,
                colour: match (&p.probs, p.kept) {
                    (None, _) => UNSCORED,
                    (Some(_), true) => KEPT,
                    (Some(_), false) => REJECTED,
                },
            })
            .collect();
        let rgb = display::render(&image, &marks, radius, 1024);
        let png = display::png_bytes(&rgb)?;
        let file = dir.join(format!("{}.png", cryoprune_formats::names::stem(&mic.name)));
        write_atomic(&file, |w| w.write_all(&png))?;
        let kept = mic.picks.iter().filter(|p| p.kept).count();
        html.push_str("<figure>");
        push_image(
            html,
            "jpeg",
            &display::jpeg_bytes(&rgb, 75)?,
            &mic.name,
            "overlay",
        );
        let _ = write!(
            html,
            "<figcaption>{}: {kept} of {} kept</figcaption></figure>",
            esc(&mic.name),
            mic.picks.len()
        );
    }
    Ok(())
}

/// Every scored pick with its micrograph file, for the galleries and overlays.
pub fn picks(
    set: &PickSet,
    outcomes: &[Vec<Outcome>],
    rule: &Rule,
    pairs: &[(usize, usize)],
    micrographs: &[PathBuf],
) -> Vec<ReportMicrograph> {
    pairs
        .iter()
        .map(|&(g, m)| ReportMicrograph {
            name: set.micrographs[g].micrograph.clone(),
            path: micrographs[m].clone(),
            picks: set.micrographs[g]
                .picks
                .iter()
                .zip(&outcomes[g])
                .map(|(p, o)| ReportPick {
                    x: p.x,
                    y: p.y,
                    probs: match o {
                        Outcome::Scored(pr) => Some(pr.to_vec()),
                        Outcome::Unscored(_) => None,
                    },
                    kept: rule.keeps(o),
                })
                .collect(),
        })
        .collect()
}

//! The evaluate-picks job: any picker's picks against true particle centres. One-to-one
//! matching within a radius, greedy by score; precision, recall and F1 at a threshold (every
//! pick by default) and at the threshold with the best F1; average precision over thresholds;
//! a precision-recall plot.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use cryoprune_formats::atomic::write_atomic;
use cryoprune_formats::names::micrograph_key;
use cryoprune_formats::{PickFormat, PickSet};
use cryoprune_train::matching::{match_greedy, Candidate, Curve, Point};
use serde::{Deserialize, Serialize};

use crate::events::Events;
use crate::inputs::check_outputs;
use crate::{invalid, Result};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct EvaluatePicksConfig {
    /// The picks to score: files or folders, one format.
    #[arg(long, required = true, num_args = 1..)]
    pub picks: Vec<PathBuf>,
    /// Format of --picks when the extension does not tell.
    #[arg(long)]
    pub format: Option<PickFormat>,
    /// True particle centres: files or folders, one format.
    #[arg(long, required = true, num_args = 1..)]
    pub truth: Vec<PathBuf>,
    /// Format of --truth when the extension does not tell.
    #[arg(long)]
    pub truth_format: Option<PickFormat>,
    /// A pick within this many pixels of a true centre finds it (e.g. the particle radius).
    #[arg(long)]
    pub radius: f64,
    /// Score only picks with a score of at least this (default: every pick).
    #[arg(long, value_parser = crate::finite)]
    pub threshold: Option<f64>,
    /// Write the scores as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the precision-recall curve as PNG here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// One micrograph's or the whole set's scores.
#[derive(Debug, Clone, Serialize)]
pub struct MicrographScore {
    pub micrograph: String,
    pub truth: usize,
    #[serde(flatten)]
    pub point: Point,
}

#[derive(Debug, Clone, Serialize)]
pub struct PicksReport {
    pub radius: f64,
    pub micrographs: Vec<MicrographScore>,
    /// Every micrograph together, at the threshold asked for.
    pub total: Point,
    /// The threshold with the best F1 (None without scores).
    pub best: Option<Point>,
    pub average_precision: Option<f64>,
    /// Picks on micrographs the truth does not have (not scored).
    pub unscored_picks: usize,
}

impl PicksReport {
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{:<40} {:>6} {:>6} {:>6} {:>9} {:>6} {:>6}\n",
            "micrograph", "truth", "picks", "found", "precision", "recall", "F1"
        );
        let row = |name: &str, truth: usize, p: &Point| {
            format!(
                "{:<40} {:>6} {:>6} {:>6} {:>9.3} {:>6.3} {:>6.3}\n",
                name, truth, p.picks, p.true_positives, p.precision, p.recall, p.f1
            )
        };
        for m in &self.micrographs {
            s += &row(&m.micrograph, m.truth, &m.point);
        }
        let truth: usize = self.micrographs.iter().map(|m| m.truth).sum();
        s += &row("all", truth, &self.total);
        match self.total.threshold {
            Some(t) => s += &format!("(picks with score >= {t}; radius {} px)\n", self.radius),
            None => s += &format!("(every pick; radius {} px)\n", self.radius),
        }
        if let Some(b) = &self.best {
            s += &format!(
                "best F1 {:.3} at score >= {} (precision {:.3}, recall {:.3}, {} picks)\n",
                b.f1,
                b.threshold.map_or("-".into(), |t| format!("{t:.4}")),
                b.precision,
                b.recall,
                b.picks
            );
        }
        match self.average_precision {
            Some(ap) => s += &format!("average precision {ap:.3}\n"),
            None => s += "average precision: none (the picks carry no score)\n",
        }
        s
    }
}

pub fn run(cfg: &EvaluatePicksConfig, events: &dyn Events) -> Result<PicksReport> {
    if !(cfg.radius > 0.0 && cfg.radius.is_finite()) {
        invalid!(
            "--radius {} must be a positive number of pixels",
            cfg.radius
        );
    }
    let mut inputs = cfg.picks.clone();
    inputs.extend(cfg.truth.iter().cloned());
    let files = [
        ("--json", cfg.json.as_deref()),
        ("--plot", cfg.plot.as_deref()),
    ];
    check_outputs(&files, None, &inputs)?;
    let picks = PickSet::read(&cfg.picks, cfg.format)?;
    let truth = PickSet::read(&cfg.truth, cfg.truth_format)?;
    if truth.is_empty() {
        invalid!("the truth files hold no particles");
    }
    let mut by_key: HashMap<String, Vec<Candidate>> = HashMap::new();
    for (m, p) in picks.iter() {
        by_key
            .entry(micrograph_key(m))
            .or_default()
            .push(Candidate {
                x: p.x,
                y: p.y,
                score: p.score,
            });
    }
    let mut curve = Curve::default();
    let mut micrographs = Vec::new();
    let mut scored_keys = HashSet::new();
    for m in &truth.micrographs {
        let key = micrograph_key(&m.micrograph);
        let centres: Vec<(f64, f64)> = m.picks.iter().map(|p| (p.x, p.y)).collect();
        let candidates = by_key.get(&key).cloned().unwrap_or_default();
        if candidates.is_empty() {
            events.warn(format!(
                "no picks on `{}`: its {} particles count as missed",
                m.micrograph,
                centres.len()
            ));
        }
        let matched = match_greedy(&candidates, &centres, cfg.radius);
        let mut one = Curve::default();
        one.add(&candidates, &matched, centres.len());
        curve.add(&candidates, &matched, centres.len());
        micrographs.push(MicrographScore {
            micrograph: m.micrograph.clone(),
            truth: centres.len(),
            point: one.at(cfg.threshold),
        });
        scored_keys.insert(key);
    }
    let unscored: usize = by_key
        .iter()
        .filter(|(k, _)| !scored_keys.contains(*k))
        .map(|(_, v)| v.len())
        .sum();
    if unscored > 0 {
        events.warn(format!(
            "{unscored} picks lie on micrographs the truth does not cover; they are not scored"
        ));
    }
    // Without scores there are no thresholds to choose between (and no average precision).
    let average_precision = curve.average_precision();
    let report = PicksReport {
        radius: cfg.radius,
        micrographs,
        total: curve.at(cfg.threshold),
        best: average_precision.and(curve.best()),
        average_precision,
        unscored_picks: unscored,
    };
    events.output(report.to_text());
    if let Some(path) = &cfg.json {
        crate::write_json(path, &report)?;
        events.note(format!("scores written to {}", path.display()));
    }
    if let Some(path) = &cfg.plot {
        let name = cfg
            .picks
            .first()
            .map_or("picks".into(), |p| p.display().to_string());
        let points = curve
            .points()
            .iter()
            .map(|p| (p.recall, p.precision))
            .collect();
        let png = cryoprune_train::plot::precision_recall(&[(name, points)])?;
        write_atomic(path, |w| w.write_all(&png))?;
        events.note(format!(
            "precision-recall curve written to {}",
            path.display()
        ));
    }
    Ok(report)
}

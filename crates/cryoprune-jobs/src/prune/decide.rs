//! The keep decision: which classes are kept and how, what became of each pick, and the run's
//! summary of it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use cryoprune_formats::PickSet;
use cryoprune_train::threshold::Advice;
use cryoprune_train::trainer::argmax;
use serde::Serialize;

use super::prior::Shift;
use crate::{invalid, Result};

/// Why a pick has no probabilities: no micrograph was given for it, its centre is outside the
/// micrograph, or its box reaches past the edge.
pub const UNSCORED: [&str; 3] = [
    "no micrograph",
    "outside the micrograph",
    "box past the edge",
];

/// What became of one pick.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Scored(Probs),
    Unscored(&'static str),
}

/// A pick's class probabilities: inline for up to four classes (the usual model), so the ten
/// million picks of a large project cost no allocation each.
#[derive(Clone, PartialEq)]
pub enum Probs {
    Inline { len: u8, values: [f32; 4] },
    Heap(Box<[f32]>),
}

impl From<Vec<f32>> for Probs {
    fn from(v: Vec<f32>) -> Probs {
        match v.len() {
            n @ 0..=4 => {
                let mut values = [0.0; 4];
                values[..n].copy_from_slice(&v);
                Probs::Inline {
                    len: n as u8,
                    values,
                }
            }
            _ => Probs::Heap(v.into_boxed_slice()),
        }
    }
}

impl std::ops::Deref for Probs {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match self {
            Probs::Inline { len, values } => &values[..*len as usize],
            Probs::Heap(v) => v,
        }
    }
}

impl std::ops::DerefMut for Probs {
    fn deref_mut(&mut self) -> &mut [f32] {
        match self {
            Probs::Inline { len, values } => &mut values[..*len as usize],
            Probs::Heap(v) => v,
        }
    }
}

impl std::fmt::Debug for Probs {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The decision rule: which classes are kept and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub keep: Vec<usize>,
    pub threshold: Option<f64>,
}

impl Rule {
    /// The kept classes among `classes`: those named, or the one that is plainly the particle
    /// class.
    pub fn new(classes: &[String], named: &[String], threshold: Option<f64>) -> Result<Rule> {
        if let Some(t) = threshold {
            if !(t > 0.0 && t < 1.0) {
                invalid!("--threshold {t}: expected a probability between 0 and 1");
            }
        }
        Ok(Rule {
            keep: kept_classes(classes, named)?,
            threshold,
        })
    }

    pub fn p_keep(&self, p: &[f32]) -> f64 {
        self.keep.iter().map(|&c| f64::from(p[c])).sum()
    }

    pub fn kept(&self, p: &[f32]) -> bool {
        match self.threshold {
            Some(t) => self.p_keep(p) >= t,
            None => self.keep.contains(&argmax(p)),
        }
    }

    /// The kept classes' probability of each scored pick among `outcomes`.
    pub fn p_keeps<'a>(
        &'a self,
        outcomes: impl IntoIterator<Item = &'a Outcome> + 'a,
    ) -> impl Iterator<Item = f64> + 'a {
        outcomes.into_iter().filter_map(|o| match o {
            Outcome::Scored(p) => Some(self.p_keep(p)),
            Outcome::Unscored(_) => None,
        })
    }

    /// Whether `outcome` is kept: unscored picks never are.
    pub fn keeps(&self, outcome: &Outcome) -> bool {
        matches!(outcome, Outcome::Scored(p) if self.kept(p))
    }
}

fn kept_classes(classes: &[String], named: &[String]) -> Result<Vec<usize>> {
    if named.is_empty() {
        const PARTICLE: [&str; 4] = ["particle", "particles", "good", "true"];
        return match classes
            .iter()
            .position(|c| PARTICLE.contains(&c.to_ascii_lowercase().as_str()))
        {
            Some(i) => Ok(vec![i]),
            None => invalid!(
                "say which classes to keep with --keep (the model's classes: {})",
                classes.join(", ")
            ),
        };
    }
    let mut keep = Vec::new();
    for name in named {
        match classes.iter().position(|c| c == name) {
            Some(i) if !keep.contains(&i) => keep.push(i),
            Some(_) => {}
            None => invalid!(
                "--keep {name}: not one of the model's classes ({})",
                classes.join(", ")
            ),
        }
    }
    if keep.len() == classes.len() {
        invalid!("--keep names every class, so nothing would be pruned");
    }
    Ok(keep)
}

#[derive(Debug, Serialize, Default, Clone)]
pub struct MicrographSummary {
    pub micrograph: String,
    pub picks: usize,
    pub kept: usize,
    pub per_class: BTreeMap<String, usize>,
    pub unscored: usize,
}

/// The run's summary, printed and written as JSON.
#[derive(Debug, Serialize, Default, Clone)]
pub struct Summary {
    pub model: PathBuf,
    pub classes: Vec<String>,
    pub keep: Vec<String>,
    pub threshold: Option<f64>,
    pub picks: usize,
    pub scored: usize,
    pub kept: usize,
    pub rejected: usize,
    /// Picks with no probabilities, by reason (outside the micrograph, edge, no micrograph).
    pub unscored: BTreeMap<String, usize>,
    /// Scored picks by predicted class.
    pub per_class: BTreeMap<String, usize>,
    pub per_micrograph: Vec<MicrographSummary>,
    pub files_written: Vec<PathBuf>,
    pub files_skipped: Vec<PathBuf>,
    pub warnings: Vec<String>,
    pub device: String,
    pub seconds: f64,
    pub particles_per_second: f64,
    pub threshold_advice: Option<Advice>,
    /// The move of the probabilities from the training picks' class mix to the one assumed
    /// for these picks; `None`: as the model gives them.
    pub prior: Option<Shift>,
    /// What was combined with the image besides it, in words (empty: the image alone).
    pub context: Vec<String>,
}

impl Summary {
    /// The counts of the micrograph groups that were classified (`active`).
    pub fn of(
        set: &PickSet,
        classes: &[String],
        rule: &Rule,
        outcomes: &[Vec<Outcome>],
        active: &[bool],
    ) -> Summary {
        let zero = || classes.iter().map(|c| (c.clone(), 0)).collect();
        let mut s = Summary {
            classes: classes.to_vec(),
            keep: rule.keep.iter().map(|&c| classes[c].clone()).collect(),
            threshold: rule.threshold,
            per_class: zero(),
            ..Summary::default()
        };
        for (g, m) in set.micrographs.iter().enumerate() {
            if !active[g] {
                continue;
            }
            let mut ms = MicrographSummary {
                micrograph: m.micrograph.clone(),
                picks: m.picks.len(),
                per_class: zero(),
                ..Default::default()
            };
            for o in &outcomes[g] {
                match o {
                    Outcome::Scored(p) => {
                        s.scored += 1;
                        let c = &classes[argmax(p)];
                        *s.per_class.get_mut(c).expect("a class") += 1;
                        *ms.per_class.get_mut(c).expect("a class") += 1;
                        ms.kept += usize::from(rule.kept(p));
                    }
                    Outcome::Unscored(why) => {
                        ms.unscored += 1;
                        *s.unscored.entry(why.to_string()).or_insert(0) += 1;
                    }
                }
            }
            s.picks += ms.picks;
            s.kept += ms.kept;
            s.per_micrograph.push(ms);
        }
        s.rejected = s.picks - s.kept;
        s
    }

    pub fn to_text(&self) -> String {
        let s = self;
        let pct = |n: usize| 100.0 * n as f64 / s.picks.max(1) as f64;
        let mut t = format!(
            "{} picks on {}: kept {} ({:.1}%), rejected {} ({:.1}%)\n",
            s.picks,
            crate::count(s.per_micrograph.len(), "micrograph"),
            s.kept,
            pct(s.kept),
            s.rejected,
            pct(s.rejected)
        );
        if !s.context.is_empty() {
            t.push_str(&format!(
                "  evidence: the image, {}\n",
                s.context.join(" and ")
            ));
        }
        if let Some(shift) = &s.prior {
            t.push_str(&format!("  prior: {}\n", shift.to_text()));
        }
        t.push_str(&format!(
            "  kept: {} by {}\n",
            s.keep.join(", "),
            match s.threshold {
                Some(th) => format!("p >= {th}"),
                None => "most probable class".into(),
            }
        ));
        for (c, n) in &s.per_class {
            t.push_str(&format!("  predicted {c}: {n} ({:.1}%)\n", pct(*n)));
        }
        for (why, n) in &s.unscored {
            t.push_str(&format!("  not classified ({why}): {n}\n"));
        }
        let per_mic_kept: Vec<f64> = s
            .per_micrograph
            .iter()
            .filter(|m| m.picks > 0)
            .map(|m| m.kept as f64 / m.picks as f64)
            .collect();
        if let (Some(lo), Some(hi)) = (
            per_mic_kept.iter().cloned().reduce(f64::min),
            per_mic_kept.iter().cloned().reduce(f64::max),
        ) {
            t.push_str(&format!(
                "  kept per micrograph: {:.0}% to {:.0}%\n",
                100.0 * lo,
                100.0 * hi
            ));
        }
        t.push_str(&format!(
            "  {} written, {} left as they were; {:.1} s, {:.0} particles/s through the network",
            crate::count(s.files_written.len(), "file"),
            s.files_skipped.len(),
            s.seconds,
            s.particles_per_second
        ));
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A large project holds ten million outcomes at once: no allocation each up to 4 classes.
    #[test]
    fn outcomes_are_small_and_keep_any_number_of_classes() {
        assert!(
            std::mem::size_of::<Outcome>() <= 24,
            "{}",
            std::mem::size_of::<Outcome>()
        );
        for n in [1, 2, 4, 5, 9] {
            let v: Vec<f32> = (0..n).map(|i| i as f32 / 10.0).collect();
            let mut p = Probs::from(v.clone());
            assert_eq!(&p[..], &v[..]);
            assert_eq!(matches!(p, Probs::Inline { .. }), n <= 4);
            p[0] = 1.0;
            assert_eq!(p[0], 1.0);
        }
    }
    use cryoprune_formats::{Pick, PickFormat};

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_particle_class_is_kept_unless_named() {
        let classes = names(&["carbon", "ice", "Particle"]);
        assert_eq!(Rule::new(&classes, &[], None).unwrap().keep, vec![2]);
        let named = names(&["ice", "Particle"]);
        assert_eq!(Rule::new(&classes, &named, None).unwrap().keep, vec![1, 2]);
        assert!(Rule::new(&classes, &names(&["dirt"]), None).is_err());
        assert!(Rule::new(&classes, &classes, None).is_err());
        let err = Rule::new(&names(&["a", "b"]), &[], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--keep") && err.contains("a, b"), "{err}");
        assert!(Rule::new(&classes, &[], Some(1.0)).is_err());
    }

    #[test]
    fn the_rule_uses_the_threshold_on_the_kept_classes_together() {
        let p = [0.3f32, 0.3, 0.4];
        let by_class = Rule {
            keep: vec![0, 1],
            threshold: None,
        };
        assert!(!by_class.kept(&p));
        let by_p = Rule {
            keep: vec![0, 1],
            threshold: Some(0.55),
        };
        assert!(by_p.kept(&p));
        assert!((by_p.p_keep(&p) - 0.6).abs() < 1e-6);
        assert!(!by_p.keeps(&Outcome::Unscored("box past the edge")));
    }

    #[test]
    fn the_summary_counts_kept_classes_and_unscored_picks_per_micrograph() {
        let mut set = PickSet::empty(PickFormat::Csv);
        let mut index = Default::default();
        for (m, n) in [("a", 3), ("b", 1), ("c", 2)] {
            for i in 0..n {
                set.push(m, Pick::new(i as f64, 0.0), &mut index);
            }
        }
        let scored = |p: f32| Outcome::Scored(vec![1.0 - p, p].into());
        let outcomes = vec![
            vec![
                scored(0.9),
                scored(0.2),
                Outcome::Unscored("box past the edge"),
            ],
            vec![scored(0.6)],
            vec![scored(0.9), scored(0.9)],
        ];
        let classes = names(&["junk", "particle"]);
        let rule = Rule::new(&classes, &[], Some(0.5)).unwrap();
        // The third micrograph's file was left alone by --skip-existing.
        let s = Summary::of(&set, &classes, &rule, &outcomes, &[true, true, false]);
        assert_eq!((s.picks, s.scored, s.kept, s.rejected), (4, 3, 2, 2));
        assert_eq!(s.per_class["particle"], 2);
        assert_eq!(s.unscored["box past the edge"], 1);
        assert_eq!(s.per_micrograph.len(), 2);
        assert_eq!(s.per_micrograph[0].unscored, 1);
        let text = s.to_text();
        assert!(
            text.starts_with("4 picks on 2 micrographs: kept 2 (50.0%)"),
            "{text}"
        );
        assert!(text.contains("kept per micrograph: 33% to 100%"), "{text}");
    }
}

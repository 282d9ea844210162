//! Where labelled particles come from: label files cut from micrographs, a class folder, or a
//! particle STAR, all cut once with the model's preprocessing.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use cryoprune_formats::{Pick, PickFormat, PickSet};
use cryoprune_train::dataset::{self, Coverage};
use cryoprune_train::prep::Preprocessing;
use cryoprune_train::{stack, Dataset};
use serde::{Deserialize, Serialize};

use crate::events::Events;
use crate::inputs::micrograph_paths;
use crate::{invalid, Result};

/// Where a command's labelled particles come from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct LabelsConfig {
    /// Micrographs the labels were picked on (globs, quoted), or one list of them (a RELION
    /// micrographs STAR or cryoSPARC exposures .cs).
    #[arg(long, num_args = 1..)]
    pub micrographs: Vec<String>,
    /// Labels: a CSV (micrograph,x,y,label), any pick file with a label column, a particle STAR
    /// (index@stack images, label column; no micrographs needed), a folder with one
    /// sub-folder of particle images per class, or a CSV image,labels of images (PNG, TIFF,
    /// JPEG, MRC; paths relative to the CSV) with any number of `;`-separated labels each (a
    /// micrographs STAR with _cryopruneLabels likewise).
    #[arg(long, required = true, num_args = 1..)]
    pub labels: Vec<PathBuf>,
    /// Label file format when the extension does not tell.
    #[arg(long)]
    pub format: Option<PickFormat>,
    /// Particle images given as --labels (class folder or particle STAR) have the opposite
    /// contrast to the micrographs, as RELION's Extract writes them by default.
    #[arg(long)]
    pub images_inverted: bool,
}

/// What `labels` names.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelSource {
    /// One sub-folder of particle images per class.
    ClassFolder(PathBuf),
    /// A particle STAR (`index@stack` images) with a label column.
    Stack(PathBuf),
    /// A CSV `image,labels`: images with label sets (multi-label).
    ImageTable(PathBuf),
    /// Labelled picks, cut from the micrographs.
    Picks,
}

/// A folder of class sub-folders (particle images), as opposed to a folder of pick files.
fn is_class_folder(path: &Path) -> bool {
    path.is_dir()
        && std::fs::read_dir(path).is_ok_and(|entries| {
            let mut dirs = 0;
            let mut picks = 0;
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs += 1;
                } else if PickFormat::from_path(&p).is_some() {
                    picks += 1;
                }
            }
            dirs >= 2 && picks == 0
        })
}

impl LabelSource {
    /// Particle images are already boxes, so they need no box size.
    pub fn is_images(&self) -> bool {
        !matches!(self, LabelSource::Picks)
    }
}

impl LabelsConfig {
    /// A particle STAR is read from its stacks when it has no coordinates or no micrographs
    /// are given; with both, the picks are cut from the micrographs like any other label file.
    pub fn source(&self) -> LabelSource {
        match self.labels.as_slice() {
            [single] if is_class_folder(single) => LabelSource::ClassFolder(single.clone()),
            [single] if dataset::is_image_table(single) => LabelSource::ImageTable(single.clone()),
            [single]
                if PickFormat::from_path(single) == Some(PickFormat::Star)
                    && stack::lists_images(single)
                        .is_some_and(|coords| !coords || self.micrographs.is_empty()) =>
            {
                LabelSource::Stack(single.clone())
            }
            _ => LabelSource::Picks,
        }
    }

    /// Labelled particles, cut as `pre` says. `classes` fixes the class order (a trained
    /// model's); otherwise it comes from the labels. Picks whose labels hold label sets
    /// (`carbon;ice`) give a multi-label set.
    pub fn dataset(
        &self,
        classes: Option<&[String]>,
        pre: &Preprocessing,
        threads: usize,
        events: &dyn Events,
    ) -> Result<Dataset> {
        self.read(classes, false, pre, threads, events)
    }

    /// Images or picks with label sets in `labels`' order (a multi-label model's), read as sets
    /// even where each pick happens to carry one label or none.
    pub fn label_sets(
        &self,
        labels: &[String],
        pre: &Preprocessing,
        threads: usize,
        events: &dyn Events,
    ) -> Result<Dataset> {
        self.read(Some(labels), true, pre, threads, events)
    }

    fn read(
        &self,
        classes: Option<&[String]>,
        sets: bool,
        pre: &Preprocessing,
        threads: usize,
        events: &dyn Events,
    ) -> Result<Dataset> {
        let invert = pre.invert != self.images_inverted;
        let (data, what) = match self.source() {
            LabelSource::ClassFolder(dir) => {
                let data = dataset::from_folder(&dir, pre.input_size, invert)?;
                if let Some(c) = classes {
                    if c != data.classes.as_slice() {
                        invalid!(
                            "{}: class folders ({}) differ from the model's classes ({})",
                            dir.display(),
                            data.classes.join(", "),
                            c.join(", ")
                        );
                    }
                }
                (data, dir)
            }
            LabelSource::ImageTable(table) => (
                dataset::from_image_table(&table, pre.input_size, invert, classes, pre.spectrum)?,
                table,
            ),
            LabelSource::Stack(star) => (
                stack::read(&star, pre.input_size, invert, classes)?,
                star.clone(),
            ),
            LabelSource::Picks => {
                if self.micrographs.is_empty() {
                    invalid!(
                        "--micrographs is needed to cut labelled picks (or give --labels a folder \
                         with one sub-folder of particle images per class, or a particle STAR file)"
                    );
                }
                let micrographs = micrograph_paths(&self.micrographs)?;
                let mut set = PickSet::read(&self.labels, self.format)?;
                drop_repeated_places(&mut set, events);
                let pipeline = cryoprune_train::prep::pipeline(pre, threads, 0);
                // Label sets when asked for or found; in the model's order when there is one.
                let label_sets = match (classes, dataset::label_sets_of(&set)) {
                    (Some(known), found) if sets || found.is_some() => Some(known.to_vec()),
                    (None, found) => found,
                    (Some(_), _) => None,
                };
                let (data, coverage) = match label_sets {
                    Some(labels) => {
                        dataset::from_picks_with_label_sets(&set, &micrographs, &labels, &pipeline)?
                    }
                    None => {
                        let classes = match classes {
                            Some(c) => c.to_vec(),
                            None => dataset::classes_of(&set)?,
                        };
                        dataset::from_picks(&set, &micrographs, &classes, &pipeline)?
                    }
                };
                report_coverage(&coverage, &data, events);
                // Every command that cuts labels needs some; with none, train went on to warn
                // that each class had 0 labels and evaluate printed an empty confusion.
                if data.is_empty() {
                    invalid!(
                        "{}: none of the {} labelled picks (on {}) could be cut: {} \
                         lie outside their micrograph, {} too close to its edge for the box \
                         (--edge pad-noise keeps those); are the coordinates in the \
                         micrographs' pixels?",
                        self.labels
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                        coverage.picks,
                        crate::count(coverage.micrographs, "micrograph"),
                        coverage.outside,
                        coverage.skipped_edge
                    );
                }
                return Ok(data);
            }
        };
        let what = what.display();
        events.note(if data.is_multi_label() {
            format!(
                "{what}: {} images with {} labels (carried by: {})",
                data.len(),
                data.classes.len(),
                class_counts(&data)
            )
        } else {
            format!(
                "{what}: {} particle images in {} classes ({})",
                data.len(),
                data.classes.len(),
                class_counts(&data)
            )
        });
        Ok(data)
    }
}

/// A pick's place on its micrograph as a key: two picks are at one place when they agree to a
/// hundredth of a pixel, which survives a round trip through any pick format's decimals.
pub(crate) fn place(x: f64, y: f64) -> (i64, i64) {
    ((x * 100.0).round() as i64, (y * 100.0).round() as i64)
}

/// Leaves out the places labelled more than once. A copy (a label file given twice, or two
/// files that overlap) would count twice and could land on both sides of the validation
/// split, so all but the first are dropped; two different labels of one place cannot both be
/// right, so the place is left out.
fn drop_repeated_places(set: &mut PickSet, events: &dyn Events) {
    let place = |p: &Pick| place(p.x, p.y);
    fn label(p: &Pick) -> &str {
        p.label.as_deref().map_or("", str::trim)
    }
    let (mut copies, mut contradicted) = (0usize, 0usize);
    let mut example = None;
    for group in &mut set.micrographs {
        let mut first: HashMap<(i64, i64), &str> = HashMap::new();
        let mut disputed = HashSet::new();
        for p in &group.picks {
            let f = *first.entry(place(p)).or_insert(label(p));
            if f != label(p) && disputed.insert(place(p)) && example.is_none() {
                example = Some(format!(
                    "({}, {}) in {}: {f} and {}",
                    p.x,
                    p.y,
                    group.micrograph,
                    label(p)
                ));
            }
        }
        contradicted += disputed.len();
        let mut kept = HashSet::new();
        group.picks.retain(|p| {
            let at = place(p);
            if disputed.contains(&at) {
                return false;
            }
            let fresh = kept.insert(at);
            copies += usize::from(!fresh);
            fresh
        });
    }
    if copies > 0 {
        events.note(format!(
            "{copies} labels repeat a place labelled before with the same class; each place \
             counts once"
        ));
    }
    if let Some(example) = example {
        let places = if contradicted == 1 {
            "1 place carries".to_string()
        } else {
            format!("{contradicted} places carry")
        };
        events.warn(format!(
            "{places} two different labels, e.g. {example}; left out (correct the label file \
             to use them)"
        ));
    }
}

/// "12 carbon, 30 particle".
pub fn class_counts(data: &Dataset) -> String {
    data.classes
        .iter()
        .zip(data.counts())
        .map(|(name, n)| format!("{n} {name}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn report_coverage(c: &Coverage, data: &Dataset, events: &dyn Events) {
    events.note(format!(
        "cut {} labelled particles from {} ({})",
        data.len(),
        crate::count(c.micrographs, "micrograph"),
        class_counts(data)
    ));
    if c.skipped_edge + c.outside > 0 {
        events.note(format!(
            "  {} picks too close to the edge and {} outside their micrograph were left out",
            c.skipped_edge, c.outside
        ));
    }
    if !c.unmatched.is_empty() {
        let shown: Vec<&str> = c.unmatched.iter().take(3).map(String::as_str).collect();
        events.note(format!(
            "  labels of {} micrographs not among --micrographs were not used ({}{})",
            c.unmatched.len(),
            shown.join(", "),
            if c.unmatched.len() > 3 { ", ..." } else { "" }
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Collect, Event};
    use cryoprune_formats::picks::MicrographPicks;

    fn labelled(rows: &[(f64, f64, &str)]) -> MicrographPicks {
        MicrographPicks {
            micrograph: "m1".into(),
            picks: rows
                .iter()
                .map(|&(x, y, l)| Pick {
                    label: Some(l.into()),
                    ..Pick::new(x, y)
                })
                .collect(),
        }
    }

    #[test]
    fn a_place_counts_once_and_a_disputed_place_not_at_all() {
        let mut set = PickSet::empty(PickFormat::Csv);
        set.micrographs.push(labelled(&[
            (10.0, 20.0, "particle"),
            (10.001, 20.0, "particle"),
            (30.0, 40.0, "particle"),
            (30.0, 40.0, " junk"),
            (30.0, 40.0, "particle"),
            (50.0, 60.0, "junk"),
            (10.0, 20.0, "particle"),
        ]));
        let events = Collect::default();
        drop_repeated_places(&mut set, &events);
        let left: Vec<(f64, f64)> = set.micrographs[0]
            .picks
            .iter()
            .map(|p| (p.x, p.y))
            .collect();
        assert_eq!(left, vec![(10.0, 20.0), (50.0, 60.0)]);
        let said: Vec<String> = events
            .events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Note(t) | Event::Warning(t) => Some(t),
                _ => None,
            })
            .collect();
        assert!(said[0].starts_with("2 labels repeat a place"), "{said:?}");
        assert!(
            said[1].starts_with(
                "1 place carries two different labels, e.g. (30, 40) in m1: particle and junk"
            ),
            "{said:?}"
        );
    }
}

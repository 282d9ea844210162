//! Labelled particles in memory: cut once per run (in parallel) from micrographs and labelled
//! picks, or read from a folder of per-class images, then shared by every epoch and trial.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cryoprune_formats::names::match_micrographs;
use cryoprune_formats::{Pick, PickSet};
use cryoprune_image::pipeline::{Job, Pipeline};
use cryoprune_model::backprop::Targets;
use cryoprune_model::pick_context::{edge_distance, PickFacts};

use crate::Error;

/// The targets of a batch, owned; [`TargetsBuf::as_targets`] lends them to a training step.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetsBuf {
    Classes(Vec<usize>),
    Labels(Vec<f32>),
}

impl TargetsBuf {
    pub fn as_targets(&self) -> Targets<'_> {
        match self {
            TargetsBuf::Classes(c) => Targets::Classes(c),
            TargetsBuf::Labels(l) => Targets::Labels(l),
        }
    }
}

/// Where a particle came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub micrograph: String,
    pub x: f64,
    pub y: f64,
    /// The picker's score of the pick, when the label file has one.
    pub score: Option<f64>,
    /// Distance to the micrograph's nearest edge in box sizes, capped at 1, when the particle
    /// was cut from a micrograph here.
    pub edge: Option<f64>,
}

impl Origin {
    pub fn facts(&self) -> PickFacts {
        PickFacts {
            score: self.score,
            edge: self.edge,
        }
    }
}

/// Square images with class indices, or with sets of labels.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub size: usize,
    /// Planes per image: 1, or 2 for a micrograph with its power spectrum.
    pub channels: usize,
    /// Row-major images, `channels` planes of `size × size` each, back to back.
    pub images: Vec<f32>,
    /// Each example's class. A multi-label set holds 0 here for every example (its targets
    /// are `multi`), so code that reads one class per example must ask `is_multi_label` first.
    pub labels: Vec<usize>,
    pub origins: Vec<Origin>,
    /// The class names, or for a multi-label set the label names.
    pub classes: Vec<String>,
    /// For a multi-label set, `multi[i][c]`: example `i` carries label `c`.
    pub multi: Option<Vec<Vec<bool>>>,
    /// Per example, a whole micrograph's measured statistics
    /// ([`cryoprune_image::exposure::measure`]); empty when they were not measured.
    pub exposure: Vec<Vec<f64>>,
}

/// Per-pick accounting of an extraction, for the log.
#[derive(Debug, Clone, Default)]
pub struct Coverage {
    pub micrographs: usize,
    pub picks: usize,
    pub kept: usize,
    pub skipped_edge: usize,
    pub outside: usize,
    /// Pick groups whose micrograph was not among the inputs.
    pub unmatched: Vec<String>,
}

impl Dataset {
    pub fn empty(size: usize, classes: Vec<String>) -> Dataset {
        Dataset {
            size,
            channels: 1,
            images: Vec::new(),
            labels: Vec::new(),
            origins: Vec::new(),
            classes,
            multi: None,
            exposure: Vec::new(),
        }
    }

    /// An empty multi-label set of these labels.
    pub fn empty_multi_label(size: usize, labels: Vec<String>) -> Dataset {
        Dataset {
            multi: Some(Vec::new()),
            ..Dataset::empty(size, labels)
        }
    }

    pub fn is_multi_label(&self) -> bool {
        self.multi.is_some()
    }

    /// Each example's label set; empty for a set of one class per example.
    pub fn label_sets(&self) -> &[Vec<bool>] {
        self.multi.as_deref().unwrap_or_default()
    }

    /// The targets of the examples at `indices`, as a training step takes them: one class
    /// each, or for a multi-label set 1/0 per label, [indices, labels] flattened.
    pub fn targets(&self, indices: &[usize]) -> TargetsBuf {
        match &self.multi {
            None => TargetsBuf::Classes(indices.iter().map(|&i| self.labels[i]).collect()),
            Some(m) => TargetsBuf::Labels(
                indices
                    .iter()
                    .flat_map(|&i| m[i].iter().map(|&on| if on { 1.0 } else { 0.0 }))
                    .collect(),
            ),
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels of one image, every plane.
    pub fn pixels(&self) -> usize {
        self.channels * self.size * self.size
    }

    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.pixels();
        &self.images[i * n..(i + 1) * n]
    }

    /// The examples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut images = Vec::with_capacity(indices.len() * self.pixels());
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Dataset {
            size: self.size,
            channels: self.channels,
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            origins: indices.iter().map(|&i| self.origins[i].clone()).collect(),
            classes: self.classes.clone(),
            multi: self
                .multi
                .as_ref()
                .map(|m| indices.iter().map(|&i| m[i].clone()).collect()),
            exposure: match self.exposure.is_empty() {
                true => Vec::new(),
                false => indices.iter().map(|&i| self.exposure[i].clone()).collect(),
            },
        }
    }

    /// This set's examples followed by `other`'s, which must share the image size and classes.
    pub fn concat(&self, other: &Dataset) -> Dataset {
        assert!(
            self.size == other.size
                && self.channels == other.channels
                && self.classes == other.classes
                && self.is_multi_label() == other.is_multi_label()
                && self.exposure.is_empty() == other.exposure.is_empty(),
            "concatenated datasets differ in image size, planes, classes, kind or measurements"
        );
        let mut all = self.clone();
        all.images.extend_from_slice(&other.images);
        all.labels.extend_from_slice(&other.labels);
        all.origins.extend(other.origins.iter().cloned());
        if let (Some(a), Some(b)) = (&mut all.multi, &other.multi) {
            a.extend(b.iter().cloned());
        }
        all.exposure.extend(other.exposure.iter().cloned());
        all
    }

    /// How many examples of each class (of a multi-label set: carry each label).
    pub fn counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.classes.len()];
        match &self.multi {
            None => self.labels.iter().for_each(|&l| c[l] += 1),
            Some(m) => {
                for example in m {
                    for (c, &on) in c.iter_mut().zip(example) {
                        *c += on as usize;
                    }
                }
            }
        }
        c
    }

    /// What is known of each example besides its image.
    pub fn facts(&self) -> Vec<PickFacts> {
        self.origins.iter().map(Origin::facts).collect()
    }

    /// Indices of the examples whose micrograph name satisfies `keep`.
    pub fn indices_where(&self, keep: impl Fn(&Origin) -> bool) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| keep(&self.origins[i]))
            .collect()
    }
}

/// The class names of labelled picks, sorted, so that a class keeps its index across runs.
pub fn classes_of(labels: &PickSet) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    for (mic, p) in labels.iter() {
        match p.label.as_deref().map(str::trim) {
            Some(l) if !l.is_empty() => names.push(l),
            _ => {
                return Err(Error::Labels(format!(
                "the pick at ({}, {}) in {mic} has no label; every row of a label file needs one",
                p.x, p.y
            )))
            }
        }
    }
    class_names(names)
}

/// Sorted, distinct class names from one label per example; at least 2.
pub(crate) fn class_names<'a>(
    labels: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>, Error> {
    let names: BTreeSet<&str> = labels.into_iter().collect();
    if names.len() < 2 {
        return Err(Error::Labels(format!(
            "found {} class{} ({}); training needs at least 2",
            names.len(),
            if names.len() == 1 { "" } else { "es" },
            names.iter().copied().collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(names.into_iter().map(str::to_string).collect())
}

/// Cuts every labelled pick from its micrograph with `pipeline`. `classes` fixes the class order
/// (a model's, when evaluating); labels outside it are an error.
pub fn from_picks(
    labels: &PickSet,
    micrographs: &[PathBuf],
    classes: &[String],
    pipeline: &Pipeline,
) -> Result<(Dataset, Coverage), Error> {
    cut(
        labels,
        micrographs,
        classes,
        pipeline,
        false,
        |micrograph, pick| {
            let name = pick.label.as_deref().unwrap_or("").trim();
            let class = classes.iter().position(|c| c == name).ok_or_else(|| {
                Error::Labels(format!(
                "{micrograph}: label `{name}` at ({}, {}) is not one of the model's classes ({})",
                pick.x,
                pick.y,
                classes.join(", ")
            ))
            })?;
            Ok(Target::Class(class))
        },
    )
}

/// The labels of picks whose label column holds label sets (`carbon;ice`; a pick with none
/// carries no label), sorted; `None` when no pick's label holds a `;` (one class per pick).
pub fn label_sets_of(picks: &PickSet) -> Option<Vec<String>> {
    let sets = picks
        .iter()
        .any(|(_, p)| p.label.as_deref().is_some_and(|l| l.contains(';')));
    sets.then(|| {
        let names: BTreeSet<&str> = picks
            .iter()
            .flat_map(|(_, p)| split_labels(p.label.as_deref().unwrap_or("")))
            .collect();
        names.into_iter().map(str::to_string).collect()
    })
}

/// The labels of a label-set value (`carbon; ice`), trimmed, empty ones dropped.
pub(crate) fn split_labels(labels: &str) -> impl Iterator<Item = &str> {
    labels.split(';').map(str::trim).filter(|l| !l.is_empty())
}

/// The set that `given` names, one flag per label of `labels`; `Err` is the first name that is
/// not among `labels`.
pub(crate) fn set_of<'a>(
    given: impl IntoIterator<Item = &'a str>,
    labels: &[String],
) -> Result<Vec<bool>, &'a str> {
    let mut set = vec![false; labels.len()];
    for name in given {
        set[labels.iter().position(|l| l == name).ok_or(name)?] = true;
    }
    Ok(set)
}

/// Cuts picks with label sets as [`from_picks`] cuts picks with one class each; `labels` fixes
/// the order (see [`label_sets_of`], or a model's) and a label outside it is an error.
pub fn from_picks_with_label_sets(
    picks: &PickSet,
    micrographs: &[PathBuf],
    labels: &[String],
    pipeline: &Pipeline,
) -> Result<(Dataset, Coverage), Error> {
    cut(
        picks,
        micrographs,
        labels,
        pipeline,
        true,
        |micrograph, pick| {
            let set = set_of(split_labels(pick.label.as_deref().unwrap_or("")), labels).map_err(
                |name| {
                    Error::Labels(format!(
                        "{micrograph}: label `{name}` at ({}, {}) is not one of the model's \
                         labels ({})",
                        pick.x,
                        pick.y,
                        labels.join(", ")
                    ))
                },
            )?;
            Ok(Target::Set(set))
        },
    )
}

/// One example's target: a class, or a set of labels.
enum Target {
    Class(usize),
    Set(Vec<bool>),
}

/// Cuts picks that carry no label, as [`from_picks`] cuts labelled ones, for a model to
/// classify; every example's label is class 0, a placeholder.
pub fn from_unlabelled_picks(
    picks: &PickSet,
    micrographs: &[PathBuf],
    classes: &[String],
    pipeline: &Pipeline,
) -> Result<(Dataset, Coverage), Error> {
    cut(picks, micrographs, classes, pipeline, false, |_, _| {
        Ok(Target::Class(0))
    })
}

fn cut(
    labels: &PickSet,
    micrographs: &[PathBuf],
    classes: &[String],
    pipeline: &Pipeline,
    multi_label: bool,
    label_of: impl Fn(&str, &Pick) -> Result<Target, Error>,
) -> Result<(Dataset, Coverage), Error> {
    let names: Vec<String> = labels
        .micrographs
        .iter()
        .map(|m| m.micrograph.clone())
        .collect();
    let report = match_micrographs(&names, micrographs);
    let mut coverage = Coverage {
        unmatched: report.unmatched_picks.clone(),
        ..Default::default()
    };
    let mut jobs = Vec::new();
    let mut job_labels = Vec::new();
    for &(p, m) in &report.pairs {
        let group = &labels.micrographs[p];
        if group.picks.is_empty() {
            continue;
        }
        let ls = group
            .picks
            .iter()
            .map(|pick| label_of(&group.micrograph, pick))
            .collect::<Result<Vec<Target>, Error>>()?;
        jobs.push(Job {
            path: micrographs[m].clone(),
            picks: group.picks.iter().map(|k| (k.x, k.y)).collect(),
        });
        let scores: Vec<Option<f64>> = group.picks.iter().map(|k| k.score).collect();
        job_labels.push((group.micrograph.clone(), ls, scores));
    }
    if jobs.is_empty() {
        return Err(Error::Labels(cryoprune_formats::names::no_match_message(
            &names,
            micrographs,
        )));
    }
    let size = pipeline.extract.out_size;
    let mut data = if multi_label {
        Dataset::empty_multi_label(size, classes.to_vec())
    } else {
        Dataset::empty(size, classes.to_vec())
    };
    pipeline.run(&jobs, |out| -> Result<(), Error> {
        let job = &jobs[out.index];
        let (name, ls, scores) = &job_labels[out.index];
        coverage.micrographs += 1;
        coverage.picks += job.picks.len();
        coverage.kept += out.particles.kept.len();
        coverage.skipped_edge += out.particles.skipped_edge.len();
        coverage.outside += out.particles.outside.len();
        data.images.extend_from_slice(&out.particles.data);
        for &k in &out.particles.kept {
            match &ls[k] {
                Target::Class(c) => data.labels.push(*c),
                Target::Set(set) => {
                    data.labels.push(0);
                    data.multi
                        .as_mut()
                        .expect("a multi-label set")
                        .push(set.clone());
                }
            }
            data.origins.push(Origin {
                micrograph: name.clone(),
                x: job.picks[k].0,
                y: job.picks[k].1,
                score: scores[k],
                edge: Some(edge_distance(
                    job.picks[k].0,
                    job.picks[k].1,
                    out.shape,
                    pipeline.extract.box_size,
                )),
            });
        }
        Ok(())
    })?;
    Ok((data, coverage))
}

/// Reads a folder with one sub-folder of particle images per class (MRC/MRCS stacks, TIFF, PNG
/// or JPEG); class names are the sub-folder names. Images are resampled to `size`, given zero
/// mean and unit variance of the background and inverted if asked, like extracted particles.
pub fn from_folder(root: &Path, size: usize, invert: bool) -> Result<Dataset, Error> {
    crate::folder::read(root, size, invert)
}

/// Reads images with label sets listed in a CSV `image,labels` (see `folder::read_table`),
/// each followed by its power spectrum when `spectrum` is on.
pub fn from_image_table(
    table: &Path,
    size: usize,
    invert: bool,
    labels: Option<&[String]>,
    spectrum: bool,
) -> Result<Dataset, Error> {
    crate::folder::read_table(table, size, invert, labels, spectrum)
}

/// Whole images (micrographs) for a multi-label model of `labels` to tag, cut as
/// [`from_image_table`] cuts them.
pub fn from_images(
    files: &[PathBuf],
    size: usize,
    invert: bool,
    labels: &[String],
    spectrum: bool,
) -> Result<Dataset, Error> {
    crate::folder::read_images(files, size, invert, labels, spectrum)
}

/// Whether the table of images `path` lists whole micrographs (see
/// `folder::lists_micrographs`).
pub fn lists_micrographs(path: &Path) -> bool {
    crate::folder::lists_micrographs(path)
}

/// Whether `path` is a CSV `image,labels` table of images with label sets.
pub fn is_image_table(path: &Path) -> bool {
    crate::folder::is_image_table(path)
}

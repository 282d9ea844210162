//! Before anything is classified: which pick files go where, which micrographs their picks are
//! on, which files a rerun leaves alone, and what about the coordinates looks wrong.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cryoprune_formats::picks::check::{coordinate_warnings, Placed};
use cryoprune_formats::{micrograph_shape, PickFormat, PickSet};
use cryoprune_image::pipeline::Job;
use cryoprune_model::PickContext;

use super::PruneConfig;
use crate::events::Events;
use crate::inputs::{check_outputs, jobs, micrograph_paths, pair_with_micrographs};
use crate::{invalid, Context, Result};
use cryoprune_formats::names::names_a_folder;

/// What a prune run will do, worked out from its inputs.
pub struct Plan {
    pub set: PickSet,
    pub micrographs: Vec<PathBuf>,
    /// OUT names a file (a single input pruned to a file path), not a folder.
    pub out_is_file: bool,
    /// Each input file's name in an output folder (`PickSet::output_names`).
    pub names: Vec<PathBuf>,
    /// Output path of each input file.
    pub dests: Vec<PathBuf>,
    /// Input files left alone by `skip_existing`.
    pub skipped: Vec<bool>,
    /// Input files this run writes: not skipped, and in a shard, those of its micrographs.
    pub writes: Vec<bool>,
    /// The files holding picks of each micrograph group, and the reverse.
    pub group_files: Vec<Vec<usize>>,
    pub file_groups: Vec<Vec<usize>>,
    /// Groups to classify: those with a file to write, or in a shard, those on its micrographs.
    pub active: Vec<bool>,
    /// (group, micrograph) of every group with picks on a micrograph given, including those
    /// whose files a rerun leaves alone: the dataset prior is estimated on all of them, so a
    /// rerun decides as the unbroken run did.
    pub pairs: Vec<(usize, usize)>,
    /// The extraction job of each pair: its micrograph and pick centres.
    pub jobs: Vec<Job>,
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn new(
        cfg: &PruneConfig,
        context: Option<&PickContext>,
        events: &dyn Events,
    ) -> Result<Plan> {
        let set = crate::inputs::read_scaled(&cfg.picks, cfg.format, cfg.scale)?;
        let micrographs = micrograph_paths(&cfg.micrographs)?;
        let out_is_file = set.files.len() == 1
            && !names_a_folder(&cfg.out)
            && cfg.out.extension().is_some_and(|e| {
                set.files[0]
                    .path
                    .extension()
                    .map(|x| x.to_ascii_lowercase())
                    == Some(e.to_ascii_lowercase())
            });
        refuse_inputs_as_output(&set, &cfg.out)?;
        if cfg.shard.is_some() && out_is_file {
            invalid!(
                "--shard writes each shard's outputs into its own --out folder; give a folder"
            );
        }
        if cfg.per_micrograph {
            if set.format != PickFormat::Star || out_is_file {
                invalid!("--per-micrograph writes RELION coordinate STARs into a folder: it needs STAR picks and an --out folder");
            }
            if cfg.skip_existing {
                invalid!("--skip-existing goes by input file and --per-micrograph writes by micrograph; use one of them");
            }
        }
        let mut inputs: Vec<PathBuf> = set.files.iter().map(|f| f.path.clone()).collect();
        inputs.extend(micrographs.iter().cloned());
        inputs.extend(cfg.labels.iter().cloned());
        inputs.push(cfg.model.clone());
        let out = Some(cfg.out.as_path());
        let (out_file, out_folder) = if out_is_file {
            (out, None)
        } else {
            (None, out)
        };
        let files = [
            ("--out", out_file),
            ("--scores", cfg.scores.as_deref()),
            ("--report", cfg.report.as_deref()),
        ];
        check_outputs(&files, out_folder.map(|f| ("--out", f)), &inputs)?;
        let names = set.output_names();
        let dests: Vec<PathBuf> = names
            .iter()
            .map(|name| match out_is_file {
                true => cfg.out.clone(),
                false => cfg.out.join(name),
            })
            .collect();
        if !out_is_file {
            // Inputs of one name keep the folders that tell them apart; what is left is one
            // file given twice (or as two paths to it), whose output the second would replace.
            let mut seen: HashMap<&Path, &Path> = HashMap::new();
            for (dest, f) in dests.iter().zip(&set.files) {
                if let Some(other) = seen.insert(dest, &f.path) {
                    invalid!(
                        "{} and {} share a file name, so both would be written as {}; give \
                         each file once",
                        other.display(),
                        f.path.display(),
                        dest.display()
                    );
                }
            }
        }
        let skipped: Vec<bool> = dests
            .iter()
            .map(|d| cfg.skip_existing && d.exists())
            .collect();
        let n_skipped = skipped.iter().filter(|&&s| s).count();
        if n_skipped > 0 {
            events.note(format!(
                "--skip-existing: {n_skipped} of {} output files exist and are left alone",
                dests.len()
            ));
        }
        let mut group_files: Vec<Vec<usize>> = vec![Vec::new(); set.micrographs.len()];
        let mut file_groups: Vec<Vec<usize>> = vec![Vec::new(); set.files.len()];
        for (g, m) in set.micrographs.iter().enumerate() {
            for src in m.picks.iter().filter_map(|p| p.source) {
                if !group_files[g].contains(&src.file()) {
                    group_files[g].push(src.file());
                    file_groups[src.file()].push(g);
                }
            }
        }
        let report = pair_with_micrographs(&set, &micrographs, "they are not kept", events);
        let pairs: Vec<(usize, usize)> = report
            .pairs
            .iter()
            .copied()
            .filter(|&(g, _)| !set.micrographs[g].picks.is_empty())
            .collect();
        // A shard classifies the groups on its micrographs and writes the files all of whose
        // classified groups are its own; shard 0 also writes the files with none.
        let mut owned: Vec<Option<bool>> = vec![None; set.micrographs.len()];
        if let Some(shard) = cfg.shard {
            let takes = shard.takes(&micrographs);
            for &(g, m) in &pairs {
                owned[g] = Some(takes[m]);
            }
        }
        let writes: Vec<bool> = file_groups
            .iter()
            .zip(&skipped)
            .map(|(gs, &skip)| {
                let mut mine = gs.iter().filter_map(|&g| owned[g]).peekable();
                !skip
                    && match cfg.shard {
                        None => true,
                        Some(s) if mine.peek().is_none() => s.index == 0,
                        Some(_) => mine.all(|o| o),
                    }
            })
            .collect();
        let active: Vec<bool> = (0..set.micrographs.len())
            .map(|g| match (cfg.shard, owned[g]) {
                (Some(_), Some(o)) => o,
                _ => group_files[g].iter().any(|&f| writes[f]),
            })
            .collect();
        let mut warnings = Vec::new();
        if !report.unmatched_picks.is_empty() {
            warnings.push(format!(
                "picks of {} micrographs match none of the {} micrographs given; they are not kept",
                report.unmatched_picks.len(),
                micrographs.len()
            ));
        }
        if !pairs.iter().any(|&(g, _)| active[g]) && active.iter().any(|&a| a) {
            return Err(crate::inputs::no_match(&set, &micrographs));
        }
        let mut shapes = Vec::with_capacity(pairs.len());
        for &(_, m) in &pairs {
            shapes
                .push(micrograph_shape(&micrographs[m]).context_with(|| {
                    format!("reading the size of {}", micrographs[m].display())
                })?);
        }
        let jobs = jobs(&set, &pairs, &micrographs);
        let placed: Vec<Placed> = jobs
            .iter()
            .zip(&shapes)
            .map(|(j, &shape)| Placed {
                picks: &j.picks,
                shape,
            })
            .collect();
        warnings.extend(coordinate_warnings(&placed));
        let mut plan = Plan {
            set,
            micrographs,
            out_is_file,
            names,
            dests,
            skipped,
            writes,
            group_files,
            file_groups,
            active,
            pairs,
            jobs,
            warnings,
        };
        if let Some(ctx) = context {
            let shifted = plan.check_picker_scores(ctx, &cfg.model)?;
            plan.warnings.extend(shifted);
        }
        Ok(plan)
    }

    /// The jobs classified for their outputs (whose group is active), in job order.
    pub fn todo(&self) -> Vec<usize> {
        (0..self.jobs.len())
            .filter(|&i| self.active[self.pairs[i].0])
            .collect()
    }

    pub fn files_skipped(&self) -> Vec<PathBuf> {
        self.dests
            .iter()
            .zip(&self.skipped)
            .filter(|(_, &s)| s)
            .map(|(d, _)| d.clone())
            .collect()
    }

    /// Where `--write-rejected` puts the rejected picks.
    pub fn rejected_dir(&self, out: &Path) -> PathBuf {
        match (self.out_is_file, out.parent()) {
            (true, Some(parent)) => parent.join("rejected"),
            (true, None) => PathBuf::from("rejected"),
            (false, _) => out.join("rejected"),
        }
    }

    /// Where the summary JSON goes.
    pub fn summary_path(&self, out: &Path) -> PathBuf {
        match self.out_is_file {
            true => out.with_extension("summary.json"),
            false => out.join("prune_summary.json"),
        }
    }

    /// Every pick to classify must carry a score when the model combines the score with the
    /// image: one without is an error naming its file and record. A warning comes back when
    /// the scores sit far from those the model was calibrated on, the sign of another picker
    /// or another run.
    fn check_picker_scores(&self, ctx: &PickContext, model: &Path) -> Result<Option<String>> {
        let Some(term) = ctx.score_term() else {
            return Ok(None);
        };
        let set = &self.set;
        let (mut sum, mut count) = (0.0, 0usize);
        for &(g, _) in &self.pairs {
            for p in &set.micrographs[g].picks {
                match p.score {
                    Some(s) if s.is_finite() => {
                        sum += s;
                        count += 1;
                    }
                    _ => {
                        let at = p.source.map_or_else(
                            || set.micrographs[g].micrograph.clone(),
                            |r| {
                                format!(
                                    "{}, record {}",
                                    set.files[r.file()].path.display(),
                                    r.row() + 1
                                )
                            },
                        );
                        invalid!(
                            "{at}: the pick at ({}, {}) has no score, and the model in {} combines \
                             the picker's score with the image; pass --image-only to classify on \
                             the image alone",
                            p.x,
                            p.y,
                            model.display()
                        );
                    }
                }
            }
        }
        let mean = sum / count.max(1) as f64;
        let shift = term.shift(mean);
        Ok((shift > 3.0).then(|| {
            format!(
                "the picks' scores average {mean:.4}, {shift:.1} standard deviations from the mean \
                 the model was calibrated on ({:.4}): were they made by the same picker as the \
                 training labels? (--image-only classifies on the image alone)",
                term.mean
            )
        }))
    }
}

/// Refuses an OUT that is a pick file or the folder holding them (with words for that case;
/// `check_outputs` refuses the other inputs).
fn refuse_inputs_as_output(set: &PickSet, out: &Path) -> Result<()> {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let out_c = canon(out);
    let indexes = set.indexes.iter().map(|i| &i.path);
    let nodes = set.suffix_nodes.iter().map(|n| &n.path);
    for path in set
        .files
        .iter()
        .map(|f| &f.path)
        .chain(indexes)
        .chain(nodes)
        .chain(&set.joined)
    {
        let file = canon(path);
        if file == out_c || file.parent() == Some(out_c.as_path()) {
            invalid!(
                "--out {} is where the input picks are ({}); choose another folder so the \
                 picker's files stay as they were",
                out.display(),
                path.display()
            );
        }
    }
    Ok(())
}

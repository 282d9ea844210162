//! Writing the pruned picks back: each source file's own rows (every column kept) with the class
//! and probabilities added in the conventions of its format, and the scores of every pick.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use cryoprune_formats::atomic::write_atomic;
use cryoprune_formats::picks::{
    coordinate_file, write_relion_index, Content, RowRef, COORDINATES_INDEX,
};
use cryoprune_formats::{Pick, PickFormat, PickSet};
use cryoprune_train::trainer::argmax;

use super::decide::{Outcome, Rule};
use crate::Result;

/// Writes one input file's kept (and rejected) picks once all its micrographs are done.
pub struct Writer<'a> {
    pub set: &'a PickSet,
    pub classes: &'a [String],
    pub rule: &'a Rule,
    pub dests: &'a [PathBuf],
    /// Each input file's name in an output folder (`PickSet::output_names`).
    pub names: &'a [PathBuf],
    pub rejected_dir: Option<PathBuf>,
    /// STAR outputs without the `_cryoprune*` columns.
    pub relion_columns: bool,
    /// Coordinate files per micrograph under this folder (RELION's layout), not per input file.
    pub per_micrograph: Option<PathBuf>,
}

impl Writer<'_> {
    /// Writes file `file`'s outputs; returns the paths written.
    pub fn write(&self, file: usize, outcomes: &[Vec<Outcome>]) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        if let Some(out) = &self.per_micrograph {
            let kept = self.subset(file, outcomes, true);
            written.extend(kept.write_coordinate_files(out)?);
            if let Some(dir) = &self.rejected_dir {
                let rejected = self.subset(file, outcomes, false);
                written.extend(rejected.write_coordinate_files(dir)?);
            }
            return Ok(written);
        }
        self.write_rows(file, outcomes, true, &self.dests[file])?;
        written.push(self.dests[file].clone());
        if let Some(dir) = &self.rejected_dir {
            let dest = dir.join(&self.names[file]);
            self.write_rows(file, outcomes, false, &dest)?;
            written.push(dest);
        }
        Ok(written)
    }

    /// RELION's nodes of what was written, in `out` and the rejected picks' folder (RELION's
    /// Extract takes a node, not the files). File by file: each 4/5 index the set was read
    /// through, under its own name, and each 3.1 suffix node. Micrograph by micrograph: one
    /// listing every coordinate file in `written` (none where there are none), named as the
    /// index read, else `coordinates.star`.
    pub fn write_relion_nodes(&self, out: &Path, written: &[PathBuf]) -> Result<Vec<PathBuf>> {
        let written: HashSet<&PathBuf> = written.iter().collect();
        let mut indexes = Vec::new();
        for dir in std::iter::once(out.to_path_buf()).chain(self.rejected_dir.clone()) {
            if self.per_micrograph.is_none() {
                let dests: Vec<PathBuf> = self.names.iter().map(|n| dir.join(n)).collect();
                indexes.extend(self.set.write_relion_nodes(&dir, &dests)?);
                continue;
            }
            let read = self.set.indexes.first();
            let name = read.and_then(|i| i.path.file_name());
            let index = dir.join(name.unwrap_or(COORDINATES_INDEX.as_ref()));
            let listed: Vec<(String, PathBuf)> = self
                .set
                .micrographs
                .iter()
                .map(|m| {
                    let file = coordinate_file(&dir, &m.micrograph, PickFormat::Star);
                    (m.micrograph.clone(), file)
                })
                .filter(|(_, f)| written.contains(f))
                .map(|(m, f)| (m, read.map_or(f.clone(), |i| i.listing(&f))))
                .collect();
            if listed.is_empty() {
                // Nothing rejected: an index of nothing is no input for RELION.
                continue;
            }
            write_relion_index(&index, &listed)?;
            indexes.push(index);
        }
        Ok(indexes)
    }

    /// Writes the kept (or rejected) rows of source file `file` to `dest`. A STAR or `.cs`
    /// (which may hold millions of picks) goes out straight from its rows, the added values
    /// made as each row is written; the small text formats through an annotated copy.
    fn write_rows(
        &self,
        file: usize,
        outcomes: &[Vec<Outcome>],
        kept: bool,
        dest: &Path,
    ) -> Result<()> {
        let set = self.set;
        if matches!(set.files[file].content, Content::Table { .. }) {
            self.subset(file, outcomes, kept).write_source(0, dest)?;
            return Ok(());
        }
        // (row, group, pick in group), 12 bytes a pick: a file may hold ten million.
        let mut chosen: Vec<(u32, u32, u32)> = Vec::new();
        for (g, m) in set.micrographs.iter().enumerate() {
            for (k, (pick, outcome)) in m.picks.iter().zip(&outcomes[g]).enumerate() {
                match pick.source {
                    Some(src) if src.file() == file && self.rule.keeps(outcome) == kept => {
                        chosen.push((src.row() as u32, g as u32, k as u32))
                    }
                    _ => {}
                }
            }
        }
        chosen.sort_unstable();
        let layout = self.layout(file);
        let rows: Vec<usize> = chosen.iter().map(|c| c.0 as usize).collect();
        let value = |i: usize, c: usize| {
            let (_, g, k) = chosen[i];
            let (g, k) = (g as usize, k as usize);
            let pick = &set.micrographs[g].picks[k];
            layout.value(c, pick, &outcomes[g][k], self.classes, self.rule)
        };
        set.write_source_rows(file, &rows, &layout.columns, &value, dest)?;
        Ok(())
    }

    /// The picks of source file `file` that are kept (or rejected), annotated, as a set of one
    /// file.
    fn subset(&self, file: usize, outcomes: &[Vec<Outcome>], kept: bool) -> PickSet {
        let set = self.set;
        let mut out = PickSet::empty(set.format);
        out.box_size = set.box_size;
        out.files.push(set.files[file].clone());
        let layout = self.layout(file);
        out.extra_columns = layout.columns.clone();
        let mut index = Default::default();
        for (g, m) in set.micrographs.iter().enumerate() {
            for (pick, outcome) in m.picks.iter().zip(&outcomes[g]) {
                let Some(src) = pick.source.filter(|s| s.file() == file) else {
                    continue;
                };
                if self.rule.keeps(outcome) != kept {
                    continue;
                }
                let mut p: Pick = pick.clone();
                p.source = Some(RowRef::new(0, src.row()));
                p.extra = (0..layout.columns.len())
                    .map(|c| layout.value(c, pick, outcome, self.classes, self.rule))
                    .collect();
                p.score = Some(rounded_p_keep(outcome, self.rule));
                out.push(&m.micrograph, p, &mut index);
            }
        }
        if set.format == PickFormat::Box {
            out.set_scores(|_, p| p.score.unwrap_or(0.0));
        }
        out
    }

    /// The columns added to source file `file` in the conventions of its format.
    fn layout(&self, file: usize) -> Layout {
        let set = self.set;
        let is_box = set.format == PickFormat::Box;
        // A RELION STAR's figure of merit becomes the kept probability, so RELION's own
        // --minimum_pick_fom thresholds on it; the picker's stays beside it.
        let star = match &set.files[file].content {
            Content::Star { star, block } if set.format == PickFormat::Star => Some(
                star.blocks[*block]
                    .first_loop()
                    .is_some_and(|l| l.column(FOM).is_some()),
            ),
            _ => None,
        };
        let ours = !(is_box || star.is_some() && self.relion_columns);
        let mut columns = Vec::new();
        let mut kinds = Vec::new();
        if let Some(had_fom) = star {
            columns.push(FOM.to_string());
            kinds.push(Added::PKeep);
            if had_fom && ours {
                columns.push(PICKER_FOM.into());
                kinds.push(Added::PickerScore);
            }
        }
        if ours {
            let names = column_names(set, self.classes);
            kinds.push(Added::Class);
            kinds.extend((0..self.classes.len()).map(Added::Probability));
            columns.extend(names);
        }
        Layout { columns, kinds }
    }
}

/// What an added column holds.
#[derive(Clone, Copy)]
enum Added {
    /// The kept classes' probability (4 decimals; 0 when unscored).
    PKeep,
    /// The picker's own score, which the kept probability replaced.
    PickerScore,
    /// The predicted class, or `unscored`.
    Class,
    /// One class's probability (empty when unscored).
    Probability(usize),
}

/// The columns added to one file, and what each holds.
struct Layout {
    columns: Vec<String>,
    kinds: Vec<Added>,
}

impl Layout {
    fn value(
        &self,
        c: usize,
        pick: &Pick,
        outcome: &Outcome,
        classes: &[String],
        rule: &Rule,
    ) -> String {
        match (self.kinds[c], outcome) {
            (Added::PKeep, _) => rounded_p_keep(outcome, rule).to_string(),
            (Added::PickerScore, _) => pick.score.map_or(String::new(), |s| s.to_string()),
            (Added::Class, Outcome::Scored(p)) => classes[argmax(p)].clone(),
            (Added::Class, Outcome::Unscored(_)) => "unscored".into(),
            (Added::Probability(i), Outcome::Scored(p)) => format!("{:.4}", p[i]),
            (Added::Probability(_), Outcome::Unscored(_)) => String::new(),
        }
    }
}

/// The kept classes' probability to 4 decimals, as the outputs give it; 0 when unscored.
fn rounded_p_keep(outcome: &Outcome, rule: &Rule) -> f64 {
    match outcome {
        Outcome::Scored(p) => (rule.p_keep(p) * 1e4).round() / 1e4,
        Outcome::Unscored(_) => 0.0,
    }
}

/// RELION's figure of merit, and where the picker's goes when the kept probability takes it.
const FOM: &str = "rlnAutopickFigureOfMerit";
const PICKER_FOM: &str = "cryopruneOriginalFom";

/// The added columns' names in the conventions of the input's format.
fn column_names(set: &PickSet, classes: &[String]) -> Vec<String> {
    let star_text = matches!(
        set.files.first().map(|f| &f.content),
        Some(Content::Star { .. })
    );
    let (class, prob): (&str, fn(&str) -> String) = match set.format {
        _ if star_text => ("cryopruneClass", |c| format!("cryopruneP_{c}")),
        PickFormat::Cs => ("class", |c| format!("p_{c}")),
        _ => ("cryoprune_class", |c| format!("cryoprune_p_{c}")),
    };
    std::iter::once(class.to_string())
        .chain(classes.iter().map(|c| prob(&column_safe(c))))
        .collect()
}

/// Class names go into column names, which STAR and CSV readers split on whitespace or commas.
fn column_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Every classified pick with its class, probabilities and whether it was kept, as CSV.
pub fn write_scores(
    path: &Path,
    set: &PickSet,
    classes: &[String],
    rule: &Rule,
    outcomes: &[Vec<Outcome>],
    active: &[bool],
) -> Result<()> {
    write_atomic(path, |w| {
        let mut c = csv::Writer::from_writer(w);
        let header = ["micrograph", "x", "y", "class"]
            .into_iter()
            .map(String::from)
            .chain(classes.iter().map(|c| format!("p_{}", column_safe(c))))
            .chain(["kept".to_string()]);
        c.write_record(header)?;
        for (g, m) in set.micrographs.iter().enumerate() {
            if !active[g] {
                continue;
            }
            for (p, o) in m.picks.iter().zip(&outcomes[g]) {
                let mut row = vec![m.micrograph.clone(), format!("{}", p.x), format!("{}", p.y)];
                match o {
                    Outcome::Scored(pr) => {
                        row.push(classes[argmax(pr)].clone());
                        row.extend(pr.iter().map(|v| format!("{v:.5}")));
                        row.push(u8::from(rule.kept(pr)).to_string());
                    }
                    Outcome::Unscored(_) => {
                        row.push("unscored".into());
                        row.extend(classes.iter().map(|_| String::new()));
                        row.push("0".into());
                    }
                }
                c.write_record(&row)?;
            }
        }
        c.flush()
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryoprune_formats::atomic::clear_stale_partials;

    #[test]
    fn class_names_become_safe_column_names() {
        assert_eq!(column_safe("ice contamination"), "ice_contamination");
        assert_eq!(column_safe("good,1"), "good_1");
    }

    #[test]
    fn only_our_own_stale_partials_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("mic1.star");
        let ours = dir.path().join(".mic1.star.a1b2c3.partial");
        let theirs = dir.path().join(".other.star.a1b2c3.partial");
        std::fs::write(&ours, "x").unwrap();
        std::fs::write(&theirs, "x").unwrap();
        clear_stale_partials(&[dest], None);
        assert!(!ours.exists() && theirs.exists());
    }
}

//! Labelled particle stacks: a STAR file whose particle loop names each image as RELION does,
//! `index@stack.mrcs` (`rlnImageName`, index from 1), with a label column. No micrographs needed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cryoprune_formats::names::find_listed;
use cryoprune_formats::picks::LABEL_COLUMNS;
use cryoprune_formats::star::Loop;
use cryoprune_formats::{MrcFile, StarFile};
use cryoprune_image::image::Image;

use crate::boxes::BoxCutter;
use crate::dataset::{class_names, Dataset, Origin};
use crate::Error;

const IMAGE_NAME: &str = "rlnImageName";

fn err(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Labels(format!("{}: {what}", path.display()))
}

/// The loop that lists particle images: `data_particles` (RELION 3.1+) or the first loop with
/// an `rlnImageName` column (RELION 3.0).
fn particle_loop(star: &StarFile) -> Option<&Loop> {
    let has_images = |l: &&Loop| l.column(IMAGE_NAME).is_some();
    star.block("particles")
        .and_then(|b| b.loops().find(has_images))
        .or_else(|| star.blocks.iter().flat_map(|b| b.loops()).find(has_images))
}

/// Whether `path` is a STAR file listing particle images, and whether it also has coordinates
/// (then the labels can be cut from micrographs instead).
pub fn lists_images(path: &Path) -> Option<bool> {
    let star = StarFile::read(path).ok()?;
    let l = particle_loop(&star)?;
    Some(l.column("rlnCoordinateX").is_some() && l.column("rlnCoordinateY").is_some())
}

/// Reads every labelled image of the STAR file at `path`. `classes` fixes the class order (a
/// trained model's); otherwise the sorted labels give it.
pub fn read(
    path: &Path,
    size: usize,
    invert: bool,
    classes: Option<&[String]>,
) -> Result<Dataset, Error> {
    let star = StarFile::read(path)?;
    let l = particle_loop(&star)
        .ok_or_else(|| err(path, format!("no loop with an {IMAGE_NAME} column")))?;
    let image_col = l
        .column(IMAGE_NAME)
        .expect("particle_loop checks the column");
    let label_col = LABEL_COLUMNS
        .iter()
        .find_map(|c| l.column(c))
        .ok_or_else(|| {
            err(
                path,
                format!(
                    "the particle loop has no label column (one of {})",
                    LABEL_COLUMNS.join(", ")
                ),
            )
        })?;
    let mut labels = Vec::with_capacity(l.rows.len());
    for (r, row) in l.rows.iter().enumerate() {
        let label = row.get(label_col).trim();
        if label.is_empty() || label == "\"\"" {
            return Err(err(path, format!("{}empty label", l.line_of(r))));
        }
        labels.push(label);
    }
    let classes = match classes {
        Some(c) => c.to_vec(),
        None => class_names(labels.iter().copied())
            .map_err(|e| err(path, e.to_string().trim_start_matches("labels: ")))?,
    };
    let mut data = Dataset::empty(size, classes);
    // The picker's score, as `extract` and RELION's Extract carry it into particle STARs.
    let score_col = l.column("rlnAutopickFigureOfMerit");
    let mut cutter = BoxCutter::new(size, invert);
    let mut stacks: HashMap<&str, (PathBuf, MrcFile)> = HashMap::new();
    for (r, row) in l.rows.iter().enumerate() {
        let at = || l.line_of(r);
        let name = row.get(image_col);
        let (index, stack) = name
            .split_once('@')
            .and_then(|(i, s)| Some((i.trim().parse::<usize>().ok()?, s)))
            .ok_or_else(|| {
                err(
                    path,
                    format!(
                        "{}image `{name}`; expected INDEX@STACK, e.g. 12@Extract/mic1.mrcs",
                        at()
                    ),
                )
            })?;
        let label = data
            .classes
            .iter()
            .position(|c| c == labels[r])
            .ok_or_else(|| {
                err(
                    path,
                    format!(
                        "{}label `{}` is not one of the model's classes ({})",
                        at(),
                        labels[r],
                        data.classes.join(", ")
                    ),
                )
            })?;
        if !stacks.contains_key(stack) {
            let file = find_listed(stack, path).ok_or_else(|| {
                err(
                    path,
                    format!(
                        "{}stack `{stack}` not found (looked in the working directory and \
                         beside the STAR file and its parent folders)",
                        at()
                    ),
                )
            })?;
            let mrc = MrcFile::open(&file)?;
            stacks.insert(stack, (file, mrc));
        }
        let (file, mrc) = &stacks[stack];
        let h = mrc.header();
        if index == 0 || index > h.nz {
            return Err(err(
                path,
                format!(
                    "{}image {index} of `{stack}`, which holds images 1 to {}",
                    at(),
                    h.nz
                ),
            ));
        }
        let pixels = mrc.read_section(index - 1)?;
        let img = Image::new(h.nx, h.ny, pixels);
        let score = match score_col {
            Some(c) => Some(row.get(c).trim().parse::<f64>().map_err(|_| {
                err(
                    path,
                    format!(
                        "{}_rlnAutopickFigureOfMerit `{}` is not a number",
                        at(),
                        row.get(c)
                    ),
                )
            })?),
            None => None,
        };
        let origin = Origin {
            micrograph: name.to_string(),
            x: (h.nx / 2) as f64,
            y: (h.ny / 2) as f64,
            score,
            edge: None,
        };
        cutter.push(&mut data, &img, file, index, label, origin)?;
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(rel: &str) -> Option<PathBuf> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data")
            .join(rel);
        p.exists().then_some(p)
    }

    /// EMPIAR-10076's 7-particle stack with a label column added, in a STAR beside a copy of
    /// nothing: the stack is found through the STAR file's ancestors.
    #[test]
    fn reads_relion_stack_with_labels() {
        let Some(stack) = shared("sources/cryodrgn/empiar_10076_7.mrc") else {
            eprintln!("skipped: ../shared/data not present");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("Select/job005");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::copy(&stack, dir.path().join("stack.mrcs")).unwrap();
        let mut text = String::from(
            "data_optics\nloop_\n_rlnOpticsGroup\n1\n\ndata_particles\nloop_\n_rlnImageName\n_rlnClassName\n",
        );
        for i in 1..=7 {
            let label = if i % 2 == 0 { "junk" } else { "particle" };
            text += &format!("{i}@stack.mrcs {label}\n");
        }
        let star = sub.join("particles.star");
        std::fs::write(&star, &text).unwrap();
        assert_eq!(lists_images(&star), Some(false));

        let data = read(&star, 32, false, None).unwrap();
        assert_eq!(data.classes, ["junk", "particle"]);
        assert_eq!(data.labels, [1, 0, 1, 0, 1, 0, 1]);
        assert_eq!(data.origins[3].micrograph, "4@stack.mrcs");
        // Each image is the stack section resampled and normalised: distinct, finite, unit scale.
        let mrc = MrcFile::open(&stack).unwrap();
        let (n0, n3) = (mrc.read_section(0).unwrap(), mrc.read_section(3).unwrap());
        assert_ne!(n0, n3);
        for i in 0..7 {
            let img = data.image(i);
            assert!(img.iter().all(|v| v.is_finite()));
            let mean = img.iter().sum::<f32>() / img.len() as f32;
            let var = img.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / img.len() as f32;
            assert!(var > 0.1 && var < 10.0, "image {i} variance {var}");
        }
        assert_ne!(data.image(0), data.image(1));

        // Inversion flips the sign of what the network sees.
        let inv = read(&star, 32, true, None).unwrap();
        let d: f32 = data
            .image(2)
            .iter()
            .zip(inv.image(2))
            .map(|(a, b)| (a + b).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-4, "inverted image differs from the negative by {d}");
    }

    #[test]
    fn bad_rows_name_the_line() {
        let Some(stack) = shared("sources/cryodrgn/empiar_10076_7.mrc") else {
            eprintln!("skipped: ../shared/data not present");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let star = dir.path().join("p.star");
        let head = "data_particles\nloop_\n_rlnImageName\n_label\n";
        let s = stack.display();
        let cases = [
            (format!("1@{s} a\n9@{s} b\n"), "line 6: image 9 of"),
            (format!("1@{s} a\nx@{s} b\n"), "line 6: image `x@"),
            (
                format!("1@{s} a\n2@missing.mrcs b\n"),
                "stack `missing.mrcs` not found",
            ),
            (format!("1@{s} a\n2@{s} a\n"), "training needs at least 2"),
        ];
        for (rows, want) in cases {
            std::fs::write(&star, format!("{head}{rows}")).unwrap();
            let e = read(&star, 16, false, None).unwrap_err().to_string();
            assert!(e.contains(want), "{e}\nshould contain: {want}");
            assert!(e.contains("p.star"), "{e}");
        }
        std::fs::write(
            &star,
            format!("data_particles\nloop_\n_rlnImageName\n1@{s}\n"),
        )
        .unwrap();
        let e = read(&star, 16, false, None).unwrap_err().to_string();
        assert!(e.contains("no label column"), "{e}");

        // The figure of merit becomes each particle's picker score; a bad one names its line.
        let head = "data_particles\nloop_\n_rlnImageName\n_label\n_rlnAutopickFigureOfMerit\n";
        std::fs::write(&star, format!("{head}1@{s} a 0.25\n2@{s} b -1.5\n")).unwrap();
        let data = read(&star, 16, false, None).unwrap();
        let scores: Vec<_> = data.facts().iter().map(|f| f.score).collect();
        assert_eq!(scores, [Some(0.25), Some(-1.5)]);
        std::fs::write(&star, format!("{head}1@{s} a 0.25\n2@{s} b high\n")).unwrap();
        let e = read(&star, 16, false, None).unwrap_err().to_string();
        assert!(
            e.contains("line 7") && e.contains("`high` is not a number"),
            "{e}"
        );
    }
}

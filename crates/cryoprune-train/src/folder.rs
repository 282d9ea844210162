//! Particle images sorted into one sub-folder per class: `root/particle/*.png`,
//! `root/carbon/stack.mrcs`, ...

use std::fs;
use std::path::{Path, PathBuf};

use cryoprune_formats::error::Location;
use cryoprune_formats::micrograph::ImageFormat;
use cryoprune_formats::star::{Loop, StarFile};
use cryoprune_formats::{read_micrograph, MrcFile};
use cryoprune_image::image::Image;

use crate::boxes::BoxCutter;
use crate::dataset::{Dataset, Origin};
use crate::Error;

fn io(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Labels(format!("{}: {e}", path.display()))
}

/// Images of one file: every section of an MRC stack, or the single image of any other format.
fn images_in(path: &Path) -> Result<Vec<Image>, Error> {
    let is_mrc = matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("mrc" | "mrcs")
    );
    if is_mrc {
        let mrc = MrcFile::open(path).map_err(|e| io(path, e))?;
        let h = mrc.header();
        let (nx, ny) = (h.nx, h.ny);
        (0..h.nz)
            .map(|z| {
                let data = mrc.read_section(z).map_err(|e| io(path, e))?;
                Ok(Image::new(nx, ny, data))
            })
            .collect()
    } else {
        let m = read_micrograph(path).map_err(|e| io(path, e))?;
        Ok(vec![Image::new(m.nx, m.ny, m.data)])
    }
}

/// Where a whole image comes from: its name, its centre.
fn whole(name: String, img: &Image) -> Origin {
    Origin {
        micrograph: name,
        x: (img.nx / 2) as f64,
        y: (img.ny / 2) as f64,
        score: None,
        edge: None,
    }
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    v.sort();
    Ok(v)
}

pub fn read(root: &Path, size: usize, invert: bool) -> Result<Dataset, Error> {
    let class_dirs: Vec<PathBuf> = sorted_entries(root)?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    if class_dirs.len() < 2 {
        return Err(Error::Labels(format!(
            "{}: expected one sub-folder of particle images per class, found {} sub-folder(s)",
            root.display(),
            class_dirs.len()
        )));
    }
    let classes: Vec<String> = class_dirs
        .iter()
        .map(|d| {
            d.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let mut data = Dataset::empty(size, classes);
    let mut cutter = BoxCutter::new(size, invert);
    for (c, dir) in class_dirs.iter().enumerate() {
        let files: Vec<PathBuf> = sorted_entries(dir)?
            .into_iter()
            .filter(|p| p.is_file() && (ImageFormat::from_path(p).is_some()))
            .collect();
        if files.is_empty() {
            return Err(Error::Labels(format!(
                "{}: no particle images (.mrc, .mrcs, .tif, .png or .jpg) in this class folder",
                dir.display()
            )));
        }
        for file in files {
            for (k, img) in images_in(&file)?.into_iter().enumerate() {
                let origin = whole(format!("{}#{k}", file.display()), &img);
                cutter.push(&mut data, &img, &file, k, c, origin)?;
            }
        }
    }
    Ok(data)
}

/// The names the column of image paths goes by: `micrograph` for whole micrographs (as
/// `simulate` writes micrograph_tags.csv).
const IMAGE_COLUMNS: [&str; 2] = ["image", "micrograph"];

/// Label-set columns of a micrographs STAR.
const STAR_LABELS: [&str; 2] = ["cryopruneLabels", "labels"];

/// The loop of a STAR file that tags micrographs: `_rlnMicrographName` and a label-set column,
/// no coordinates; with the two columns' indices.
fn star_tags(star: &StarFile) -> Option<(&Loop, usize, usize)> {
    star.blocks
        .iter()
        .filter_map(|b| b.first_loop())
        .find_map(|l| {
            let name = l.column("rlnMicrographName")?;
            let labels = STAR_LABELS.iter().find_map(|c| l.column(c))?;
            l.column("rlnCoordinateX")
                .is_none()
                .then_some((l, name, labels))
        })
}

fn is_star(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("star"))
}

/// Whether `path` is a table of images with label sets: a CSV whose header names an `image`
/// (or `micrograph`) and a `labels` column and no coordinates (picks with label sets list
/// `micrograph,x,y,labels`), or a micrographs STAR with a `_cryopruneLabels` column.
pub fn is_image_table(path: &Path) -> bool {
    if is_star(path) {
        // A micrographs STAR is small; a particle STAR can be gigabytes, and is never read
        // whole just to learn that it is not one.
        let small = std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() < 64 << 20);
        return small && StarFile::read(path).is_ok_and(|s| star_tags(&s).is_some());
    }
    path.is_file()
        && csv::Reader::from_path(path).is_ok_and(|mut r| {
            r.headers().is_ok_and(|h| {
                let has = |names: &[&str]| h.iter().any(|c| names.contains(&c.trim()));
                has(&IMAGE_COLUMNS) && has(&["labels"]) && !has(&["x", "y"])
            })
        })
}

/// Whether the table of images `path` (see [`is_image_table`]) lists whole micrographs: a
/// micrographs STAR, or a CSV whose image column is called `micrograph`.
pub fn lists_micrographs(path: &Path) -> bool {
    is_star(path)
        || csv::Reader::from_path(path).is_ok_and(|mut r| {
            r.headers()
                .is_ok_and(|h| h.iter().any(|c| c.trim() == IMAGE_COLUMNS[1]))
        })
}

/// One row of a table of images: where in the table, the image, its labels.
type TableRow = (Location, PathBuf, Vec<String>);

fn owned_labels(labels: &str) -> Vec<String> {
    crate::dataset::split_labels(labels)
        .map(String::from)
        .collect()
}

/// The rows of a micrographs STAR with label sets; paths found as RELION's project would.
fn star_rows(table: &Path) -> Result<Vec<TableRow>, Error> {
    let star = StarFile::read(table).map_err(|e| io(table, e))?;
    let Some((l, name, labels)) = star_tags(&star) else {
        return Err(io(
            table,
            "no loop with _rlnMicrographName and _cryopruneLabels (micrographs with label sets)",
        ));
    };
    l.rows
        .iter()
        .enumerate()
        .map(|(r, row)| {
            let file =
                cryoprune_formats::names::find_listed(row.get(name), table).ok_or_else(|| {
                    io(
                        table,
                        format!("{}{}: no such image file", l.line_of(r), row.get(name)),
                    )
                })?;
            Ok((l.line_of(r), file, owned_labels(row.get(labels))))
        })
        .collect()
}

/// The rows of a CSV `image,labels`.
fn csv_rows(table: &Path) -> Result<Vec<TableRow>, Error> {
    let at = |line: usize, what: String| {
        Error::Labels(format!("{}: line {line}: {what}", table.display()))
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(table)
        .map_err(|e| io(table, e))?;
    let header = reader.headers().map_err(|e| at(1, e.to_string()))?.clone();
    let column = |names: &[&str]| {
        header
            .iter()
            .position(|h| names.contains(&h))
            .ok_or_else(|| {
                at(
                    1,
                    format!("no `{}` column (expected image,labels)", names[0]),
                )
            })
    };
    let (image_col, labels_col) = (column(&IMAGE_COLUMNS)?, column(&["labels"])?);
    let base = table.parent().unwrap_or(Path::new("."));
    let mut rows: Vec<TableRow> = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| at(line, e.to_string()))?;
        let image = record.get(image_col).unwrap_or_default();
        if image.is_empty() {
            return Err(at(line, "no image named".into()));
        }
        let labels = owned_labels(record.get(labels_col).unwrap_or_default());
        rows.push((Location::Line(line), base.join(image), labels));
    }
    Ok(rows)
}

/// Images with any number of labels each, listed in a CSV `image,labels` (the Human Protein
/// Atlas layout; or `micrograph,labels`) or a micrographs STAR with `_cryopruneLabels`: the
/// labels column holds the image's labels separated by `;` (or nothing), CSV image paths are
/// relative to the CSV's folder (a STAR's as RELION's project would have them), and an MRC
/// stack's sections all carry the row's labels (a micrograph's, as a tags table or a STAR
/// names them, is one example: its first image). The labels are every label the table names,
/// sorted, unless `known` fixes them (a trained model's). Images are cut like class-folder
/// images, each followed by its power spectrum when `spectrum` is on.
pub fn read_table(
    table: &Path,
    size: usize,
    invert: bool,
    known: Option<&[String]>,
    spectrum: bool,
) -> Result<Dataset, Error> {
    // Micrographs (a tags table) are one example a file; a table of particle images may name
    // stacks, each section its own example.
    let micrographs = lists_micrographs(table);
    let rows = if is_star(table) {
        star_rows(table)?
    } else {
        csv_rows(table)?
    };
    let at =
        |loc: &Location, what: String| Error::Labels(format!("{}: {loc}{what}", table.display()));
    if rows.is_empty() {
        return Err(at(&Location::Line(2), "no images listed".into()));
    }
    let names: Vec<String> = match known {
        Some(k) => k.to_vec(),
        None => {
            let mut all: Vec<String> = rows.iter().flat_map(|r| r.2.iter().cloned()).collect();
            all.sort();
            all.dedup();
            all
        }
    };
    if names.is_empty() {
        return Err(at(
            &Location::Line(2),
            "no image carries a label: there is nothing to learn".into(),
        ));
    }
    let mut cutter = BoxCutter::new(size, invert).with_spectrum(spectrum);
    let mut data = Dataset::empty_multi_label(size, names.clone());
    data.channels = cutter.planes();
    for (line, file, labels) in rows {
        let carried =
            crate::dataset::set_of(labels.iter().map(String::as_str), &names).map_err(|l| {
                at(
                    &line,
                    format!(
                        "label `{l}` is not one of the model's ({})",
                        names.join(", ")
                    ),
                )
            })?;
        if !file.is_file() {
            return Err(at(&line, format!("{}: no such image file", file.display())));
        }
        let images = if micrographs {
            micrograph(&file)?
        } else {
            images_in(&file)?
        };
        push_images(&mut data, &mut cutter, &file, images, &carried, spectrum)?;
    }
    Ok(data)
}

/// A micrograph file as one example: its first image, as every micrograph reader takes it.
fn micrograph(file: &Path) -> Result<Vec<Image>, Error> {
    let m = cryoprune_image::pipeline::read_first_image(file)?;
    Ok(vec![Image::new(m.nx, m.ny, m.data)])
}

/// `images` of `file` (each section of a stack its own example) into the multi-label set
/// `data`, carrying `labels`; with `measure` (whole micrographs) with its measured statistics
/// too.
fn push_images(
    data: &mut Dataset,
    cutter: &mut BoxCutter,
    file: &Path,
    images: Vec<Image>,
    labels: &[bool],
    measure: bool,
) -> Result<(), Error> {
    let stack = images.len() > 1;
    for (k, img) in images.into_iter().enumerate() {
        let name = if stack {
            format!("{}#{k}", file.display())
        } else {
            file.display().to_string()
        };
        let origin = whole(name, &img);
        cutter.push(data, &img, file, k, 0, origin)?;
        if measure {
            data.exposure
                .push(cryoprune_image::exposure::measure(&img).to_vec());
        }
        data.multi
            .as_mut()
            .expect("a multi-label set")
            .push(labels.to_vec());
    }
    Ok(())
}

/// `files` cut as [`read_table`] cuts its images, for a multi-label model of `labels` to tag
/// (every example carries no label: the truth is unknown). Each file is one micrograph, one
/// example: the first image of a stack or movie, as every micrograph reader takes it.
pub fn read_images(
    files: &[PathBuf],
    size: usize,
    invert: bool,
    labels: &[String],
    spectrum: bool,
) -> Result<Dataset, Error> {
    let mut cutter = BoxCutter::new(size, invert).with_spectrum(spectrum);
    let mut data = Dataset::empty_multi_label(size, labels.to_vec());
    data.channels = cutter.planes();
    let none = vec![false; labels.len()];
    for file in files {
        push_images(
            &mut data,
            &mut cutter,
            file,
            micrograph(file)?,
            &none,
            spectrum,
        )?;
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(path: &Path, bright: u8) {
        let img = image::GrayImage::from_fn(12, 10, |x, y| {
            image::Luma([if (x + y) % 3 == 0 { bright } else { 20 }])
        });
        img.save(path).unwrap();
    }

    #[test]
    fn a_table_of_images_gives_each_its_label_set() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("img")).unwrap();
        for (name, b) in [("a.png", 200), ("b.png", 120), ("c.png", 60)] {
            png(&dir.path().join("img").join(name), b);
        }
        let table = dir.path().join("labels.csv");
        std::fs::write(
            &table,
            "image,labels\nimg/a.png,ice;carbon\nimg/b.png,\nimg/c.png, drift \n",
        )
        .unwrap();
        assert!(is_image_table(&table) && !lists_micrographs(&table));
        let spectra = read_table(&table, 16, false, None, true).unwrap();
        assert_eq!((spectra.channels, spectra.image(2).len()), (2, 2 * 256));
        let data = read_table(&table, 16, false, None, false).unwrap();
        assert_eq!(spectra.image(1)[..256], data.image(1)[..]);
        assert_eq!(data.classes, ["carbon", "drift", "ice"]);
        assert_eq!(
            data.multi.as_deref().unwrap(),
            [
                vec![true, false, true],
                vec![false; 3],
                vec![false, true, false]
            ]
        );
        assert_eq!((data.len(), data.size, data.images.len()), (3, 16, 3 * 256));
        assert_eq!(data.counts(), [1, 1, 1]);
        assert!(data.origins[1].micrograph.ends_with("b.png"));

        // A model's labels fix the order; a label it does not know is an error at its line.
        let known: Vec<String> = ["ice", "drift", "carbon", "aggregate"]
            .map(String::from)
            .to_vec();
        let data = read_table(&table, 16, false, Some(&known), false).unwrap();
        assert_eq!(
            data.multi.as_deref().unwrap()[0],
            [true, false, true, false]
        );
        let err = read_table(&table, 16, false, Some(&known[..2]), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("`carbon`"), "{err}");

        std::fs::write(&table, "image,labels\nimg/a.png,ice\nimg/missing.png,ice\n").unwrap();
        let err = read_table(&table, 16, false, None, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 3") && err.contains("missing.png"),
            "{err}"
        );
        // Whole micrographs, as simulate's micrograph_tags.csv lists them.
        std::fs::write(&table, "micrograph,labels\nimg/a.png,drift\n").unwrap();
        assert!(is_image_table(&table));
        assert_eq!(
            read_table(&table, 16, false, None, false).unwrap().classes,
            ["drift"]
        );
        std::fs::write(&table, "micrograph,x,y,labels\nimg/a.png,3,4,drift\n").unwrap();
        assert!(!is_image_table(&table), "picks with label sets");
        std::fs::write(&table, "image,label\nimg/a.png,ice\n").unwrap();
        assert!(!is_image_table(&table));

        // A micrographs STAR with label sets, paths as RELION's project has them.
        let star = dir.path().join("tagged.star");
        std::fs::write(
            &star,
            "data_micrographs\nloop_\n_rlnMicrographName #1\n_cryopruneLabels #2\n\
             img/a.png carbon;drift\nimg/b.png \"\"\nimg/c.png drift\n",
        )
        .unwrap();
        assert!(is_image_table(&star));
        let data = read_table(&star, 16, false, None, false).unwrap();
        assert_eq!(data.classes, ["carbon", "drift"]);
        assert_eq!(
            data.multi.as_deref().unwrap(),
            [vec![true, true], vec![false, false], vec![false, true]]
        );
        std::fs::write(
            &star,
            "data_micrographs\nloop_\n_rlnMicrographName #1\n_cryopruneLabels #2\n\
             img/a.png carbon\nimg/gone.png carbon\n",
        )
        .unwrap();
        let err = read_table(&star, 16, false, None, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 6: img/gone.png"), "{err}");
        std::fs::write(
            &star,
            "data_particles\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n\
             _cryopruneLabels #3\nimg/a.png 3 carbon\n",
        )
        .unwrap();
        assert!(!is_image_table(&star), "picks, not micrographs");
        let err = read_table(&table, 16, false, None, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no `labels` column"), "{err}");
    }

    #[test]
    fn a_stack_is_one_micrograph_in_a_tags_table_and_its_sections_in_an_images_table() {
        let dir = tempfile::tempdir().unwrap();
        let frames: Vec<f32> = (0..3 * 256).map(|i| (i % 7) as f32).collect();
        cryoprune_formats::mrc::write_mrc(
            dir.path().join("movie.mrcs"),
            (16, 16, 3),
            &frames,
            cryoprune_formats::mrc::Mode::Float32,
            cryoprune_formats::mrc::WriteKind::ImageOrStack,
            Some(1.0),
        )
        .unwrap();
        let table = dir.path().join("labels.csv");
        for (header, examples) in [("micrograph", 1), ("image", 3)] {
            std::fs::write(&table, format!("{header},labels\nmovie.mrcs,drift\n")).unwrap();
            let data = read_table(&table, 16, false, None, false).unwrap();
            assert_eq!(data.len(), examples, "{header}");
        }
    }
}

//! Particle images sorted into one sub-folder per class: `root/particle/*.png`,
//! `root/carbon/stack.mrcs`, ...

use std::fs;
use std::path::{Path, PathBuf};

use cryoprune_formats::micrograph::ImageFormat;
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
                let origin = Origin {
                    micrograph: format!("{}#{k}", file.display()),
                    x: (img.nx / 2) as f64,
                    y: (img.ny / 2) as f64,
                    score: None,
                    edge: None,
                };
                cutter.push(&mut data, &img, &file, k, c, origin)?;
            }
        }
    }
    Ok(data)
}

//! The particle STAR beside the stack. A particle STAR that went in comes out with every column
//! and optics group it had (defocus, astigmatism, phase shift, voltage, Cs...): `relion_refine
//! --ctf` on a file that lost them would run with zero defocus and say nothing. Only what
//! extraction changes is rewritten: the image name, the micrograph the box was cut from, and the
//! optics groups' image pixel size and image size.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use cryoprune_formats::atomic::temp_beside;
use cryoprune_formats::picks::Content;
use cryoprune_formats::star::{quote, Loop};
use cryoprune_formats::{Pick, PickSet};

use crate::{invalid, Result};

const X: &str = "rlnCoordinateX";
const Y: &str = "rlnCoordinateY";
const IMAGE: &str = "rlnImageName";
const MICROGRAPH: &str = "rlnMicrographName";
const GROUP: &str = "rlnOpticsGroup";
const FOM: &str = "rlnAutopickFigureOfMerit";
const LABEL: &str = "cryopruneLabel";

/// What the optics block says when the input had none.
pub(super) struct Optics {
    pub mic_pixel: f64,
    pub out_pixel: f64,
    pub size: usize,
    pub voltage: f64,
    pub cs: f64,
    pub amplitude_contrast: f64,
}

/// The particle STAR's columns and where each particle's values come from.
pub(super) struct Layout {
    /// Columns of the input STAR(s) other than the five extraction writes, in the first file's
    /// order; each particle carries its pick's values.
    carried: Vec<String>,
    /// Per source file: where each carried column, and `rlnOpticsGroup`, sit in its loop.
    at: Vec<Option<(Vec<usize>, Option<usize>)>>,
    /// The picks' scores as `rlnAutopickFigureOfMerit` (when no carried column holds them).
    score: bool,
    /// The picks' labels as `cryopruneLabel` (likewise).
    label: bool,
    /// The input's optics table.
    optics: Option<Loop>,
}

impl Layout {
    pub(super) fn new(set: &PickSet) -> Result<Layout> {
        let ours = [X, Y, IMAGE, MICROGRAPH, GROUP];
        let mut carried: Option<(Vec<String>, &Path)> = None;
        let mut optics: Option<(&Loop, &Path)> = None;
        let mut at = Vec::new();
        for file in &set.files {
            let Content::Star { star, block } = &file.content else {
                at.push(None);
                continue;
            };
            let l = star.blocks[*block]
                .first_loop()
                .expect("a pick block has a loop");
            let columns: Vec<String> = l
                .columns
                .iter()
                .filter(|c| !ours.contains(&c.as_str()))
                .cloned()
                .collect();
            let (names, first) = carried.get_or_insert((columns.clone(), &file.path));
            let set_of = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
            if set_of(names) != set_of(&columns) {
                invalid!(
                    "{} and {} have different columns ({} vs {}); extract them separately, or give files whose particles carry the same metadata",
                    first.display(),
                    file.path.display(),
                    names.join(" "),
                    columns.join(" ")
                );
            }
            let index = names
                .iter()
                .map(|n| l.column(n).expect("same set"))
                .collect();
            at.push(Some((index, l.column(GROUP))));
            if let Some(o) = star.block("optics").and_then(|b| b.first_loop()) {
                match optics {
                    None => optics = Some((o, &file.path)),
                    Some((seen, path)) if seen.columns != o.columns || seen.rows != o.rows => {
                        invalid!(
                            "{} and {} have different optics groups; extract them separately",
                            path.display(),
                            file.path.display()
                        )
                    }
                    Some(_) => {}
                }
            }
        }
        let carried = carried.map(|c| c.0).unwrap_or_default();
        let has = |name: &str| carried.iter().any(|c| c == name);
        let label_carried = cryoprune_formats::picks::LABEL_COLUMNS
            .iter()
            .any(|c| has(c));
        if let Some((o, path)) = optics {
            if o.column(GROUP).is_none() {
                invalid!(
                    "{}: its data_optics block has no _{GROUP} column",
                    path.display()
                );
            }
        }
        Ok(Layout {
            score: set.iter().any(|(_, p)| p.score.is_some()) && !has(FOM),
            label: set.iter().any(|(_, p)| p.label.is_some()) && !label_carried,
            optics: optics.map(|(o, _)| o.clone()),
            carried,
            at,
        })
    }

    /// The STAR row of the particle cut for `pick` (of `set`), written as `image` from the
    /// micrograph file `micrograph`.
    pub(super) fn row(
        &self,
        set: &PickSet,
        pick: &Pick,
        image: &str,
        micrograph: &str,
    ) -> Vec<String> {
        let source = pick.source.and_then(|s| {
            let (index, group) = self.at.get(s.file())?.as_ref()?;
            let Content::Star { star, block } = &set.files[s.file()].content else {
                return None;
            };
            let row = star.blocks[*block].first_loop()?.rows.get(s.row());
            Some((row, index, *group))
        });
        let group = source
            .and_then(|(row, _, g)| g.map(|g| row[g].to_string()))
            .unwrap_or_else(|| "1".into());
        let mut out = vec![
            format!("{:.6}", pick.x),
            format!("{:.6}", pick.y),
            image.to_string(),
            micrograph.to_string(),
            group,
        ];
        match source {
            Some((row, index, _)) => out.extend(index.iter().map(|&i| row[i].to_string())),
            // A pick set holds one format, so only STAR picks are here when columns are carried.
            None => debug_assert!(self.carried.is_empty()),
        }
        if self.score {
            out.push(pick.score.map_or("0".into(), |s| s.to_string()));
        }
        if self.label {
            out.push(pick.label.as_deref().unwrap_or_default().to_string());
        }
        out
    }

    fn columns(&self) -> Vec<&str> {
        let mut c = vec![X, Y, IMAGE, MICROGRAPH, GROUP];
        c.extend(self.carried.iter().map(String::as_str));
        if self.score {
            c.push(FOM);
        }
        if self.label {
            c.push(LABEL);
        }
        c
    }

    /// The optics block: the input's groups with the particles' pixel and box size, or one group
    /// from `optics`.
    fn optics(&self, optics: &Optics) -> Loop {
        let Some(input) = &self.optics else {
            let mut l = Loop::new(
                [
                    "rlnOpticsGroupName",
                    GROUP,
                    "rlnMicrographOriginalPixelSize",
                    "rlnVoltage",
                    "rlnSphericalAberration",
                    "rlnAmplitudeContrast",
                    "rlnImagePixelSize",
                    "rlnImageSize",
                    "rlnImageDimensionality",
                ]
                .map(String::from)
                .to_vec(),
            );
            l.rows.push(vec![
                "opticsGroup1".into(),
                "1".into(),
                format!("{:.6}", optics.mic_pixel),
                optics.voltage.to_string(),
                optics.cs.to_string(),
                optics.amplitude_contrast.to_string(),
                format!("{:.6}", optics.out_pixel),
                optics.size.to_string(),
                "2".into(),
            ]);
            return l;
        };
        let mut l = input.clone();
        l.lines.clear();
        let n = l.rows.len();
        if l.column("rlnMicrographOriginalPixelSize").is_none() {
            l.set_column(
                "rlnMicrographOriginalPixelSize",
                vec![format!("{:.6}", optics.mic_pixel); n],
            );
        }
        l.set_column(
            "rlnImagePixelSize",
            vec![format!("{:.6}", optics.out_pixel); n],
        );
        l.set_column("rlnImageSize", vec![optics.size.to_string(); n]);
        l.set_column("rlnImageDimensionality", vec!["2"; n]);
        l
    }
}

/// The particle STAR, written as the particles come: rows go to a temporary file, and the
/// optics block (which needs the pixel size, known only once every micrograph is read) is
/// written in front of them on `finish`, when the whole file is renamed into place.
pub(super) struct StarStream {
    path: PathBuf,
    rows: std::io::BufWriter<tempfile::NamedTempFile>,
}

impl StarStream {
    pub(super) fn create(path: &Path) -> cryoprune_formats::Result<StarStream> {
        let rows = temp_beside(path)?;
        Ok(StarStream {
            path: path.to_path_buf(),
            rows: std::io::BufWriter::with_capacity(1 << 20, rows),
        })
    }

    pub(super) fn row(&mut self, values: &[String]) -> cryoprune_formats::Result<()> {
        let line: Vec<_> = values.iter().map(|v| quote(v)).collect();
        writeln!(self.rows, "{}", line.join(" "))
            .map_err(|e| cryoprune_formats::FormatError::io(&self.path, e))
    }

    pub(super) fn finish(self, layout: &Layout, optics: &Optics) -> Result<()> {
        let io = |e| cryoprune_formats::FormatError::io(&self.path, e);
        let rows = self.rows.into_inner().map_err(|e| io(e.into_error()))?;
        let mut out = std::io::BufWriter::new(temp_beside(&self.path)?);
        let optics = layout.optics(optics);
        let mut head = String::from("\n# version 30001\n\ndata_optics\n\nloop_\n");
        for (i, c) in optics.columns.iter().enumerate() {
            head.push_str(&format!("_{c} #{}\n", i + 1));
        }
        for row in &optics.rows {
            let line: Vec<_> = row.iter().map(quote).collect();
            head.push_str(&line.join(" "));
            head.push('\n');
        }
        head.push_str("\n\n# version 30001\n\ndata_particles\n\nloop_\n");
        for (i, c) in layout.columns().iter().enumerate() {
            head.push_str(&format!("_{c} #{}\n", i + 1));
        }
        out.write_all(head.as_bytes()).map_err(io)?;
        let mut reader = rows.reopen().map_err(io)?;
        std::io::copy(&mut reader, &mut out).map_err(io)?;
        out.write_all(b"\n").map_err(io)?;
        let out = out.into_inner().map_err(|e| io(e.into_error()))?;
        out.as_file().sync_all().map_err(io)?;
        out.persist(&self.path)
            .map_err(|e| cryoprune_formats::FormatError::io(&self.path, e.error))?;
        Ok(())
    }
}

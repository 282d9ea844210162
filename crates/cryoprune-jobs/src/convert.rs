//! The convert job: picks between RELION, cryoSPARC, EMAN, crYOLO, Topaz and CSV. Centres are
//! exact across formats (EMAN and crYOLO corners are converted with the box size; cryoSPARC
//! fractions with the micrograph size).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cryoprune_formats::{micrograph_shape, PickFormat, PickSet, WriteOptions};
use serde::{Deserialize, Serialize};

use crate::events::Events;
use crate::inputs::{micrograph_inputs, pair_with_micrographs, MicrographInputs};
use crate::{Context, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct ConvertConfig {
    /// Pick files or folders of them (one format).
    #[arg(long = "in", required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Target format: star, cs, box, cbox, topaz or csv.
    #[arg(long)]
    pub to: PickFormat,
    /// Output file (with the target's extension) or folder (one file per micrograph).
    #[arg(long)]
    pub out: PathBuf,
    /// Box size in pixels, for targets that store corners (.box, .cbox) when the input has none.
    #[arg(long = "box", value_parser = crate::positive)]
    pub box_size: Option<f64>,
    /// Micrographs (globs, quoted, or one RELION micrographs STAR or cryoSPARC exposures .cs):
    /// sizes for .cs, a check that picks lie inside them, and the micrograph names written.
    #[arg(long, num_args = 1..)]
    pub micrographs: Vec<String>,
    /// Input format when the extension does not tell (e.g. `.txt` that is not Topaz).
    #[arg(long)]
    pub format: Option<PickFormat>,
    /// Multiply coordinates by this factor (picks made on binned micrographs).
    #[arg(long, default_value_t = ConvertConfig::default().scale)]
    pub scale: f64,
}

impl Default for ConvertConfig {
    fn default() -> Self {
        Self {
            input: Vec::new(),
            to: PickFormat::Star,
            out: PathBuf::new(),
            box_size: None,
            micrographs: Vec::new(),
            format: None,
            scale: 1.0,
        }
    }
}

/// A pick file that names its micrograph by its own file name (RELION's `mic_autopick.star`,
/// a `.box` named by the micrograph's stem) would pass that name on: a STAR or `.cs` written
/// from it would name a micrograph that RELION or cryoSPARC cannot find, and files per
/// micrograph would keep the picker's suffix. So each micrograph is named as the micrograph it
/// was matched to is named (as a micrographs STAR or exposures `.cs` lists it, RELION's
/// project path, else the path as given), unless the picks name that file already. Micrographs that two pick files' names were matched to keep those names, so
/// that neither file's picks replace the other's.
fn name_by_micrographs(
    set: &mut PickSet,
    pairs: &[(usize, usize)],
    mics: &MicrographInputs,
    events: &dyn Events,
) {
    let mut times = vec![0usize; mics.paths.len()];
    for &(_, m) in pairs {
        times[m] += 1;
    }
    for &(p, m) in pairs {
        let named = &mut set.micrographs[p].micrograph;
        if Path::new(named.as_str()).file_name() == mics.paths[m].file_name() {
            continue;
        }
        if times[m] > 1 {
            events.warn(format!(
                "the picks of `{named}` keep that name: {} is also the micrograph of other picks",
                mics.names[m]
            ));
            continue;
        }
        // cryoSPARC marks an imported file with a leading `>`; the path after it is the file.
        *named = mics.names[m].trim_start_matches('>').to_string();
    }
}

/// Converts; returns the files written.
pub fn run(args: &ConvertConfig, events: &dyn Events) -> Result<Vec<PathBuf>> {
    let mut set = crate::inputs::read_scaled(&args.input, args.format, args.scale)?;
    let mut opts = WriteOptions {
        box_size: args.box_size,
        ..Default::default()
    };
    if !args.micrographs.is_empty() {
        let inputs = micrograph_inputs(&args.micrographs)?;
        let mics = &inputs.paths;
        let report = pair_with_micrographs(&set, mics, "not checked against a micrograph", events);
        name_by_micrographs(&mut set, &report.pairs, &inputs, events);
        let mut shapes = HashMap::new();
        for (p, m) in report.pairs {
            let (nx, ny) = micrograph_shape(&mics[m])
                .context_with(|| format!("reading the size of {}", mics[m].display()))?;
            let outside = set.micrographs[p]
                .picks
                .iter()
                .filter(|k| k.x < 0.0 || k.y < 0.0 || k.x >= nx as f64 || k.y >= ny as f64)
                .count();
            if outside > 0 {
                events.warn(format!(
                    "{outside} of {} picks on `{}` lie outside its {nx}x{ny} pixels (wrong --scale, or picks from another micrograph?)",
                    set.micrographs[p].picks.len(),
                    set.micrographs[p].micrograph
                ));
            }
            shapes.insert(set.micrographs[p].micrograph.clone(), (nx, ny));
        }
        opts.micrograph_shapes = shapes;
    }
    let written = set.write(args.to, &args.out, &opts)?;
    // "as box to 4 files under boxes/", "as star to picks.star".
    let place = match written.as_slice() {
        [one] => one.display().to_string(),
        _ => format!(
            "{} under {}",
            crate::count(written.len(), "file"),
            args.out.display()
        ),
    };
    events.note(format!(
        "wrote {} picks on {} as {} to {place}",
        set.len(),
        crate::count(set.micrographs.len(), "micrograph"),
        args.to,
    ));
    Ok(written)
}

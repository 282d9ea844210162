//! `cryoprune demo`: the main job on built-in data, with nothing downloaded.
//!
//! Until the simulator, training and pruning land, the demo exercises what exists: it writes a
//! small synthetic micrograph (MRC) with a bright particle at each of a few picks, writes those
//! picks in every supported coordinate format, reads each back and checks the centres agree.
//!
//! ```text
//! cryoprune demo
//! cryoprune demo --out demo_run/
//! ```

use std::path::PathBuf;

use anyhow::{ensure, Result};
use cryoprune_formats::mrc::{write_mrc, Mode, WriteKind};
use cryoprune_formats::{read_micrograph, Pick, PickFormat, PickSet, WriteOptions};

#[derive(clap::Args)]
#[command(
    about = "Run the main job end to end on built-in data (no network, no files needed)",
    after_help = super::examples(include_str!("demo.rs"))
)]
pub struct Args {
    /// Where to write the demo's files.
    #[arg(long, default_value = "cryoprune-demo")]
    out: PathBuf,
}

const SIZE: usize = 256;
const BOX: f64 = 32.0;

pub fn run(args: Args) -> Result<()> {
    eprintln!(
        "cryoprune demo: the simulator, training and pruning are not built yet, so this demo"
    );
    eprintln!("checks the file layer only (micrograph + picks in every format, read back).");
    let centres = [(40.0, 40.0), (128.0, 60.5), (200.0, 200.0), (70.0, 190.0)];
    let mut image = vec![0f32; SIZE * SIZE];
    for &(cx, cy) in &centres {
        for y in 0..SIZE {
            for x in 0..SIZE {
                let r2 = (x as f64 - cx).powi(2) + (y as f64 - cy).powi(2);
                image[y * SIZE + x] += (-r2 / 50.0).exp() as f32;
            }
        }
    }
    let mic_path = args.out.join("demo_micrograph.mrc");
    write_mrc(
        &mic_path,
        (SIZE, SIZE, 1),
        &image,
        Mode::Float32,
        WriteKind::ImageOrStack,
        Some(1.0),
    )?;
    let mic = read_micrograph(&mic_path)?;
    for &(cx, cy) in &centres {
        let v = mic.data[cy.round() as usize * SIZE + cx.round() as usize];
        ensure!(
            v > 0.9,
            "particle at ({cx}, {cy}) not found in the written micrograph"
        );
    }
    println!(
        "micrograph  {} ({}x{} float32)",
        mic_path.display(),
        mic.nx,
        mic.ny
    );

    let mut set = PickSet::empty(PickFormat::Csv);
    let mut index = Default::default();
    for (i, &(x, y)) in centres.iter().enumerate() {
        let mut p = Pick::new(x, y);
        p.score = Some(1.0 - i as f64 * 0.1);
        set.push("demo_micrograph", p, &mut index);
    }
    let opts = WriteOptions {
        box_size: Some(BOX),
        micrograph_shapes: [("demo_micrograph".to_string(), (SIZE, SIZE))].into(),
    };
    for format in [
        PickFormat::Star,
        PickFormat::Cs,
        PickFormat::Box,
        PickFormat::Cbox,
        PickFormat::Topaz,
        PickFormat::Csv,
    ] {
        let path = args.out.join(format!("picks.{}", format.extension()));
        set.write(format, &path, &opts)?;
        let back = PickSet::read(std::slice::from_ref(&path), Some(format))?;
        let worst = back
            .iter()
            .zip(set.iter())
            .map(|((_, a), (_, b))| (a.x - b.x).abs().max((a.y - b.y).abs()))
            .fold(0.0, f64::max);
        ensure!(
            back.len() == set.len() && worst < 0.01,
            "{format:?} round trip moved picks by {worst} px"
        );
        println!(
            "{:<11} {} ({} picks, max centre error {worst:.4} px)",
            format!("{format:?}"),
            path.display(),
            back.len()
        );
    }
    println!("demo complete: files in {}", args.out.display());
    Ok(())
}

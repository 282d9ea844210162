//! `cryoprune demo`: the main job end to end on built-in data, with nothing downloaded. It
//! simulates a small dataset (micrographs with particles, carbon, ice, aggregates and the picks a
//! real picker would make, with the truth of each), labels 30 picks per class from the truth as
//! a user would (particle or junk, from the first two thirds of the micrographs only), trains,
//! prunes every pick, and scores the kept picks against the truth. Each step is the real
//! subcommand, and its command line is printed so it can be run by hand.
//!
//! ```text
//! cryoprune demo
//! cryoprune demo --out demo_run/
//! cryoprune demo --fast --out /tmp/demo
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use cryoprune_formats::atomic::write_atomic;
use cryoprune_sim::Builtin;
use rand::seq::SliceRandom;
use rand::SeedableRng;

#[derive(clap::Args)]
#[command(
    about = "Run the main job end to end on built-in data (no network, no files needed)",
    after_help = super::examples(include_str!("demo.rs"))
)]
pub struct Args {
    /// Where to write the demo's files.
    #[arg(long, default_value = "cryoprune-demo")]
    out: PathBuf,
    /// A few small micrographs and a short training, for a check in seconds rather than minutes.
    #[arg(long)]
    fast: bool,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// Labels per class, as a user would give.
const SHOTS: usize = 30;
const PIXEL: f64 = 2.5;

pub fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let out = &args.out;
    let data = out.join("data");
    let (count, size) = if args.fast { (4, 512) } else { (12, 1024) };
    let seed = args.seed.to_string();
    let (count_s, size_s) = (count.to_string(), size.to_string());
    step::<super::simulate::Args>(
        "simulate",
        &[
            "--out",
            path(&data)?,
            "--count",
            &count_s,
            "--size",
            &size_s,
            "--pixel",
            &PIXEL.to_string(),
            "--seed",
            &seed,
            "--no-previews",
        ],
        super::simulate::run,
    )?;

    // The particle as simulate draws it: its box is 1.5 diameters, as a user would choose.
    let vol = Builtin::Globular.volume(PIXEL);
    let diameter = 2.0 * vol.radius() * vol.voxel / PIXEL;
    let box_size = (2.0 * (0.75 * diameter).round()).max(16.0) as usize;
    let truth = read_truth(&data.join("truth.csv"))?;
    let mut names: Vec<&String> = truth.iter().map(|t| &t.micrograph).collect();
    names.dedup();
    let labelled: Vec<&String> = names[..(2 * names.len()).div_ceil(3)].to_vec();
    let labels = out.join("labels.csv");
    let n = write_labels(&truth, &labelled, &labels, args.seed)?;
    println!(
        "labelled {n} picks ({SHOTS} per class: particle, junk) on {} of {} micrographs: {}",
        labelled.len(),
        names.len(),
        labels.display()
    );

    let mics = data.join("micrographs").join("*.mrc");
    let model = out.join("model");
    let box_s = box_size.to_string();
    let train = [
        "--micrographs",
        path(&mics)?,
        "--labels",
        path(&labels)?,
        "--box",
        &box_s,
        "--arch",
        "small",
        "--pretrained",
        "none",
        // The network sees the box at its own size (no resampling of 48-px boxes up to 64),
        // and these faint simulated particles want more steps at a higher rate than the
        // defaults, which were chosen on real data: 30 epochs at 0.03 (about 40 s).
        "--input-size",
        &box_s,
        "--lr",
        "0.03",
        "--epochs",
        if args.fast { "4" } else { "30" },
        "--seed",
        &seed,
        "--out",
        path(&model)?,
    ];
    step::<super::train::Args>("train", &train, super::train::run)?;

    let pruned = out.join("pruned");
    let scores = out.join("scores.csv");
    let report = out.join("report.html");
    step::<super::prune::Args>(
        "prune",
        &[
            "--model",
            path(&model)?,
            "--micrographs",
            path(&mics)?,
            "--picks",
            path(&data.join("picks.star"))?,
            "--out",
            path(&pruned)?,
            "--scores",
            path(&scores)?,
            "--report",
            path(&report)?,
        ],
        super::prune::run,
    )?;

    let kept = read_kept(&scores)?;
    println!("\nagainst the simulated truth:");
    for (what, held_out) in [
        ("micrographs not labelled", true),
        ("all micrographs", false),
    ] {
        let picks: Vec<&TruthPick> = truth
            .iter()
            .filter(|t| !held_out || !labelled.contains(&&t.micrograph))
            .collect();
        let score = Score::of(&picks, &kept)?;
        println!(
            "  {what:<25} {} picks: picker precision {:.3}; kept {} with precision {:.3}, recall {:.3}",
            picks.len(),
            score.raw_precision,
            score.kept,
            score.precision,
            score.recall
        );
    }
    println!(
        "\ndemo complete in {:.0} s: report {}, pruned picks in {}",
        started.elapsed().as_secs_f64(),
        report.display(),
        pruned.display()
    );
    Ok(())
}

fn path(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not valid UTF-8", p.display()))
}

/// Runs a subcommand as its command line would, after printing that line.
fn step<A: clap::Args + clap::FromArgMatches>(
    name: &'static str,
    argv: &[&str],
    run: fn(A) -> Result<()>,
) -> Result<()> {
    let quoted: Vec<String> = argv
        .iter()
        .map(|a| {
            if a.contains('*') {
                format!("'{a}'")
            } else {
                a.to_string()
            }
        })
        .collect();
    println!("\n$ cryoprune {name} {}", quoted.join(" "));
    let cmd = A::augment_args(clap::Command::new(name));
    let matches = cmd.try_get_matches_from(std::iter::once(name).chain(argv.iter().copied()))?;
    run(A::from_arg_matches(&matches)?).with_context(|| format!("demo step `{name}`"))
}

struct TruthPick {
    micrograph: String,
    x: f64,
    y: f64,
    particle: bool,
}

fn read_truth(path: &Path) -> Result<Vec<TruthPick>> {
    let mut r = csv::Reader::from_path(path)?;
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec?;
        let num = |j: usize| -> Result<f64> {
            rec.get(j)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{}: line {}: bad coordinate", path.display(), i + 2))
        };
        out.push(TruthPick {
            micrograph: rec.get(0).unwrap_or_default().to_string(),
            x: num(1)?,
            y: num(2)?,
            particle: rec.get(3) == Some("particle"),
        });
    }
    Ok(out)
}

/// Draws `SHOTS` particles and `SHOTS` junk picks (carbon, ice, aggregates, empty ice) from the
/// labelled micrographs.
fn write_labels(
    truth: &[TruthPick],
    labelled: &[&String],
    path: &Path,
    seed: u64,
) -> Result<usize> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut rows = Vec::new();
    for (class, particle) in [("particle", true), ("junk", false)] {
        let mut pool: Vec<&TruthPick> = truth
            .iter()
            .filter(|t| t.particle == particle && labelled.contains(&&t.micrograph))
            .collect();
        if pool.len() < SHOTS {
            bail!(
                "the simulation gave only {} {class} picks on the labelled micrographs",
                pool.len()
            );
        }
        pool.shuffle(&mut rng);
        rows.extend(pool[..SHOTS].iter().map(|&t| (t, class)));
    }
    write_atomic(path, |w| {
        writeln!(w, "micrograph,x,y,label")?;
        for (t, class) in &rows {
            writeln!(w, "{},{},{},{class}", t.micrograph, t.x, t.y)?;
        }
        Ok(())
    })?;
    Ok(rows.len())
}

/// Whether prune kept each pick, by micrograph and centre as the scores CSV gives them.
fn read_kept(path: &Path) -> Result<HashMap<(String, String, String), bool>> {
    let mut r = csv::Reader::from_path(path)?;
    let kept_col = r
        .headers()?
        .iter()
        .position(|h| h == "kept")
        .context("scores.csv has no kept column")?;
    let mut out = HashMap::new();
    for rec in r.records() {
        let rec = rec?;
        let coord = |j: usize| -> Result<String> {
            let v: f64 = rec
                .get(j)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{}: bad coordinate", path.display()))?;
            Ok(centi(v))
        };
        let mic = rec.get(0).unwrap_or_default().to_string();
        out.insert((mic, coord(1)?, coord(2)?), rec.get(kept_col) == Some("1"));
    }
    Ok(out)
}

struct Score {
    raw_precision: f64,
    kept: usize,
    precision: f64,
    recall: f64,
}

impl Score {
    fn of(picks: &[&TruthPick], kept: &HashMap<(String, String, String), bool>) -> Result<Score> {
        let (mut tp, mut fp, mut fneg, mut particles) = (0, 0, 0, 0);
        for t in picks {
            // simulate writes the truth with two decimals and the picks in full.
            let key = (t.micrograph.clone(), centi(t.x), centi(t.y));
            let k = *kept
                .get(&key)
                .with_context(|| format!("pick {key:?} of the truth is not in the scores"))?;
            particles += usize::from(t.particle);
            match (t.particle, k) {
                (true, true) => tp += 1,
                (false, true) => fp += 1,
                (true, false) => fneg += 1,
                _ => {}
            }
        }
        Ok(Score {
            raw_precision: particles as f64 / picks.len().max(1) as f64,
            kept: tp + fp,
            precision: tp as f64 / (tp + fp).max(1) as f64,
            recall: tp as f64 / (tp + fneg).max(1) as f64,
        })
    }
}

fn centi(v: f64) -> String {
    format!("{v:.2}")
}

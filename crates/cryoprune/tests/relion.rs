//! Against the real RELION 3.1 binaries (Debian's `relion`, installed by .ci/run): the particles
//! `extract` cuts are the ones `relion_preprocess` cuts from the same fractional picks with its
//! default normalisation; a particle STAR's CTF columns and optics group survive `extract` and
//! RELION reads them back; a STAR of two micrographs converts to the two coordinate files RELION
//! looks for.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{text, tiny_train_args};
use cryoprune_formats::mrc::MrcFile;
use cryoprune_formats::picks::PickSet;
use cryoprune_formats::StarFile;

const BOX: usize = 64;
/// RELION's Extract job passes (int)(0.75 * box / 2) for the default background circle.
const BG_RADIUS: &str = "24";

fn relion_ready() -> bool {
    let ok = Command::new("relion_preprocess")
        .arg("--version")
        .output()
        .is_ok();
    if !ok {
        let msg = "relion_preprocess (RELION 3.1) is not installed";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{msg} (CI must install it: see .ci/run)"
        );
        eprintln!("skipping: {msg} (apt-get install relion)");
    }
    ok
}

fn run_in(dir: &Path, program: &str, args: &[&str]) -> Output {
    let o = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(o.status.success(), "{program} {args:?}:\n{}", text(&o));
    o
}

/// `relion_preprocess --extract` of 64 px boxes from `source` (coordinate files or a particle
/// STAR to re-extract), into `<name>_parts/` and `<name>.star`; `norm` adds RELION's default
/// normalisation with the Extract job's background radius.
fn relion_extract(dir: &Path, name: &str, source: &[&str], norm: bool) -> Output {
    let (parts, star) = (format!("{name}_parts/"), format!("{name}.star"));
    let size = BOX.to_string();
    let mut args = vec!["--i", "micrographs.star"];
    args.extend(source);
    args.extend([
        "--part_dir",
        &parts,
        "--part_star",
        &star,
        "--extract",
        "--extract_size",
        &size,
    ]);
    if norm {
        args.extend(["--norm", "--bg_radius", BG_RADIUS]);
    }
    run_in(dir, "relion_preprocess", &args)
}

fn cryoprune_in(dir: &Path, args: &[&str]) -> Output {
    run_in(dir, env!("CARGO_BIN_EXE_cryoprune"), args)
}

/// A STAR loop as one map per row, column name (no underscore) to value.
fn rows(path: &Path, block: &str) -> Vec<HashMap<String, String>> {
    let star = StarFile::read(path).unwrap();
    let l = star
        .block(block)
        .and_then(|b| b.first_loop())
        .unwrap_or_else(|| panic!("{}: no data_{block} loop", path.display()));
    l.rows
        .iter()
        .map(|r| {
            l.columns
                .iter()
                .cloned()
                .zip(r.iter().map(str::to_string))
                .collect()
        })
        .collect()
}

/// Each particle of a particle STAR (in `dir`) by micrograph stem and coordinates (to 0.01 px).
fn images(dir: &Path, star: &Path) -> HashMap<(String, i64, i64), Vec<f32>> {
    let mut stacks: HashMap<String, MrcFile> = HashMap::new();
    rows(&dir.join(star), "particles")
        .into_iter()
        .map(|r| {
            let (index, stack) = r["rlnImageName"].split_once('@').unwrap();
            let file = stacks
                .entry(stack.to_string())
                .or_insert_with(|| MrcFile::open(dir.join(stack)).unwrap());
            let image = file
                .read_section(index.parse::<usize>().unwrap() - 1)
                .unwrap();
            let at = |c: &str| (r[c].parse::<f64>().unwrap() * 100.0).round() as i64;
            let mic = cryoprune_formats::names::stem(&r["rlnMicrographName"]);
            ((mic, at("rlnCoordinateX"), at("rlnCoordinateY")), image)
        })
        .collect()
}

fn pearson(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (
        a.iter().map(|&v| v as f64).sum::<f64>() / n,
        b.iter().map(|&v| v as f64).sum::<f64>() / n,
    );
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64 - ma, y as f64 - mb);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt()
}

/// Two simulated micrographs, a particle STAR of fractional picks on both (edge boxes
/// included) with per-particle CTF values and a 200 kV optics group, and RELION's micrograph
/// STAR for them.
fn setup(dir: &Path) -> usize {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    cryoprune_in(
        dir,
        &[
            "simulate",
            "--out",
            "sim",
            "--count",
            "2",
            "--size",
            "320",
            "--seed",
            "3",
            "--format",
            "csv",
            "--no-previews",
        ],
    );
    let set = PickSet::read(&[dir.join("sim/picks.csv")], None).unwrap();
    // Fractional parts on both sides of one half: RELION truncates, rounding would move half
    // of these boxes by a pixel.
    let fractions = [0.0, 0.25, 0.5, 0.75, 0.99];
    let mut lines = Vec::new();
    for (m, mic) in set.micrographs.iter().enumerate() {
        let name = format!("sim/micrographs/{}.mrc", mic.micrograph);
        let mut at: Vec<(f64, f64)> = mic
            .picks
            .iter()
            .take(14)
            .enumerate()
            .map(|(k, p)| {
                let f = fractions[k % fractions.len()];
                (
                    p.x.floor() + f,
                    p.y.floor() + fractions[(k + 2) % fractions.len()],
                )
            })
            .collect();
        // Boxes past the left, top, right and bottom edges.
        at.extend([(3.6, 100.5), (150.25, 1.75), (318.5, 200.0), (40.0, 316.9)]);
        for (k, (x, y)) in at.into_iter().enumerate() {
            let d = 11000.0 + 250.0 * k as f64 + 5000.0 * m as f64;
            lines.push(format!(
                "{x:.2} {y:.2} {name} 1 {d:.1} {:.1} {:.2} {:.3} {:.1} 0.95 {:.1}",
                d + 180.0,
                12.5 + k as f64,
                4.5 + 0.01 * k as f64,
                -20.0 - k as f64,
                3.0 * k as f64
            ));
        }
    }
    let optics = "data_optics\n\nloop_\n_rlnOpticsGroupName #1\n_rlnOpticsGroup #2\n\
        _rlnMicrographOriginalPixelSize #3\n_rlnVoltage #4\n_rlnSphericalAberration #5\n\
        _rlnAmplitudeContrast #6\n_rlnImagePixelSize #7\n_rlnImageSize #8\n\
        _rlnImageDimensionality #9\nopticsGroup1 1 2.5 200 2.0 0.07 2.5 64 2\n\n";
    std::fs::write(
        dir.join("input.star"),
        format!(
            "\n# version 30001\n\n{optics}\n# version 30001\n\ndata_particles\n\nloop_\n\
             _rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnMicrographName #3\n_rlnOpticsGroup #4\n\
             _rlnDefocusU #5\n_rlnDefocusV #6\n_rlnDefocusAngle #7\n_rlnCtfMaxResolution #8\n\
             _rlnCtfBfactor #9\n_rlnCtfScalefactor #10\n_rlnPhaseShift #11\n{}\n",
            lines.join("\n")
        ),
    )
    .unwrap();
    let mics: Vec<String> = set
        .micrographs
        .iter()
        .map(|m| format!("sim/micrographs/{}.mrc 1", m.micrograph))
        .collect();
    std::fs::write(
        dir.join("micrographs.star"),
        format!(
            "\n# version 30001\n\ndata_optics\n\nloop_\n_rlnOpticsGroupName #1\n\
             _rlnOpticsGroup #2\n_rlnMicrographOriginalPixelSize #3\n_rlnVoltage #4\n\
             _rlnSphericalAberration #5\n_rlnAmplitudeContrast #6\n_rlnMicrographPixelSize #7\n\
             opticsGroup1 1 2.5 200 2.0 0.07 2.5\n\n\n# version 30001\n\ndata_micrographs\n\n\
             loop_\n_rlnMicrographName #1\n_rlnOpticsGroup #2\n{}\n",
            mics.join("\n")
        ),
    )
    .unwrap();
    lines.len()
}

/// `input.star` as one RELION coordinate file per micrograph under `coords/`.
fn to_coordinate_files(dir: &Path) -> Output {
    cryoprune_in(
        dir,
        &[
            "convert",
            "--in",
            "input.star",
            "--to",
            "star",
            "--out",
            "coords/",
        ],
    )
}

/// A tiny image-only model of `setup`'s truth, in `model/`.
fn train_image_model(dir: &Path) {
    let mut train = tiny_train_args("sim/micrographs/*.mrc", "sim/truth.csv", "model");
    train.push("--image-only");
    cryoprune_in(dir, &train);
}

#[test]
fn extract_cuts_what_relion_preprocess_cuts_and_keeps_the_particle_metadata() {
    if !relion_ready() {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("relion");
    let n = setup(&dir);

    // Our cut, RELION's defaults: truncated centres, ramp subtracted, edges repeated.
    cryoprune_in(
        &dir,
        &[
            "extract",
            "--micrographs",
            "sim/micrographs/*.mrc",
            "--picks",
            "input.star",
            "--box",
            "64",
            "--edge",
            "pad-edge",
            "--out",
            "ours/particles.mrcs",
        ],
    );
    // A STAR of two micrographs becomes one coordinate file per micrograph where RELION looks.
    let o = to_coordinate_files(&dir);
    for m in ["sim_0001", "sim_0002"] {
        let f = dir.join(format!("coords/sim/micrographs/{m}.star"));
        assert!(f.is_file(), "{} missing:\n{}", f.display(), text(&o));
    }
    relion_extract(
        &dir,
        "relion",
        &["--coord_dir", "coords/", "--coord_suffix", ".star"],
        true,
    );

    let ours = images(&dir, Path::new("ours/particles.star"));
    let theirs = images(&dir, Path::new("relion.star"));
    assert_eq!(ours.len(), n, "every pick extracted by us");
    assert_eq!(
        theirs.len(),
        n,
        "every pick read from our coordinate files by RELION"
    );
    let mut worst = (f64::INFINITY, None);
    for (key, theirs) in &theirs {
        let ours = ours
            .get(key)
            .unwrap_or_else(|| panic!("{key:?} not in our STAR"));
        let r = pearson(ours, theirs);
        if r < worst.0 {
            worst = (r, Some(key.clone()));
        }
        let diff = ours
            .iter()
            .zip(theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-3, "{key:?}: largest pixel difference {diff}");
    }
    assert!(worst.0 > 0.99, "lowest correlation {worst:?}");

    // The metadata went through: every CTF column, per particle, and the optics group.
    let input = rows(&dir.join("input.star"), "particles");
    let written = rows(&dir.join("ours/particles.star"), "particles");
    let ctf = [
        "rlnDefocusU",
        "rlnDefocusV",
        "rlnDefocusAngle",
        "rlnCtfMaxResolution",
        "rlnCtfBfactor",
        "rlnCtfScalefactor",
        "rlnPhaseShift",
    ];
    let key = |r: &HashMap<String, String>| {
        let at = |c: &str| (r[c].parse::<f64>().unwrap() * 100.0).round() as i64;
        (
            at("rlnCoordinateX"),
            at("rlnCoordinateY"),
            cryoprune_formats::names::stem(&r["rlnMicrographName"]),
        )
    };
    let by_key: HashMap<_, _> = input.iter().map(|r| (key(r), r)).collect();
    for r in &written {
        let i = by_key[&key(r)];
        for c in ctf {
            assert_eq!(r.get(c), i.get(c), "{c} of {:?}", key(r));
        }
        assert_eq!(r["rlnOpticsGroup"], "1");
    }
    let optics = rows(&dir.join("ours/particles.star"), "optics");
    assert_eq!(optics.len(), 1);
    for (c, v) in [
        ("rlnVoltage", "200"),
        ("rlnSphericalAberration", "2.0"),
        ("rlnAmplitudeContrast", "0.07"),
        ("rlnImageSize", "64"),
    ] {
        assert_eq!(optics[0][c], v, "{c}");
    }
    assert_eq!(optics[0]["rlnImagePixelSize"].parse::<f64>().unwrap(), 2.5);

    // RELION re-extracts from our STAR and keeps its CTFs (it reads them per particle).
    relion_extract(
        &dir,
        "again",
        &["--reextract_data_star", "ours/particles.star"],
        true,
    );
    let again = rows(&dir.join("again.star"), "particles");
    assert_eq!(again.len(), n);
    for r in &again {
        let i = by_key[&key(r)];
        for c in [
            "rlnDefocusU",
            "rlnDefocusV",
            "rlnDefocusAngle",
            "rlnPhaseShift",
        ] {
            let (a, b) = (r[c].parse::<f64>().unwrap(), i[c].parse::<f64>().unwrap());
            assert!((a - b).abs() < 1e-3 * b.abs().max(1.0), "{c}: {a} vs {b}");
        }
    }
    let voltage = rows(&dir.join("again.star"), "optics")[0]["rlnVoltage"].clone();
    assert_eq!(voltage.parse::<f64>().unwrap(), 200.0);
}

/// A particle STAR of two micrographs pruned into RELION coordinate files (`--per-micrograph`,
/// where `relion_preprocess --coord_dir` looks, with a 4/5 index of them): the kept probability is RELION's figure of
/// merit, and `--relion-columns` leaves out the columns RELION does not know, which it
/// otherwise warns about once per column and file.
#[test]
fn pruned_coordinates_carry_the_kept_probability_as_relions_figure_of_merit() {
    if !relion_ready() {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("relion_prune");
    let n = setup(&dir);
    train_image_model(&dir);
    for (out, columns, warned) in [
        ("pruned", None, true),
        ("relion_only", Some("--relion-columns"), false),
    ] {
        let mut args = vec![
            "prune",
            "--model",
            "model",
            "--micrographs",
            "sim/micrographs/*.mrc",
            "--picks",
            "input.star",
            "--image-only",
            "--threshold",
            "0.01",
            "--per-micrograph",
            "--write-rejected",
            "--out",
            out,
        ];
        args.extend(columns);
        cryoprune_in(&dir, &args);
        let (mut total, mut kept) = (0, 0);
        for m in ["sim_0001", "sim_0002"] {
            for sub in ["", "rejected/"] {
                let written = dir.join(format!("{out}/{sub}sim/micrographs/{m}.star"));
                let picks = if written.exists() {
                    rows(&written, "")
                } else {
                    Vec::new()
                };
                total += picks.len();
                if sub.is_empty() {
                    kept += picks.len();
                }
                for r in &picks {
                    let fom: f64 = r["rlnAutopickFigureOfMerit"].parse().unwrap();
                    assert!((0.0..=1.0).contains(&fom), "{fom}");
                    assert_eq!(r.contains_key("cryopruneClass"), warned);
                    assert!(
                        !r.contains_key("rlnDefocusU"),
                        "a coordinate file, not particles"
                    );
                }
            }
        }
        assert_eq!(total, n, "every pick kept or rejected, once");
        // With an index of them, for RELION 4/5's Extract: each micrograph whose file was
        // written, as the particle STAR names it.
        for sub in ["", "rejected/"] {
            let index = dir.join(format!("{out}/{sub}coordinates.star"));
            let index = match index.exists() {
                true => rows(&index, "coordinate_files"),
                false => Vec::new(),
            };
            for r in &index {
                let file = &r["rlnMicrographCoordinates"];
                assert!(dir.join(file).is_file(), "{file}");
                let mic = &r["rlnMicrographName"];
                assert!(
                    file.ends_with(&mic.replace(".mrc", ".star")),
                    "{mic} {file}"
                );
            }
            let files = ["sim_0001", "sim_0002"]
                .iter()
                .filter(|m| {
                    let f = format!("{out}/{sub}sim/micrographs/{m}.star");
                    dir.join(f).exists()
                })
                .count();
            assert_eq!(index.len(), files, "{out}/{sub}");
        }
        let o = relion_extract(
            &dir,
            out,
            &["--coord_dir", &format!("{out}/"), "--coord_suffix", ".star"],
            false,
        );
        let warnings = text(&o).matches("unknown label").count();
        assert_eq!(warnings > 0, warned, "{}", text(&o));
        let extracted = rows(&dir.join(format!("{out}.star")), "particles");
        assert_eq!(extracted.len(), kept, "RELION extracts every kept pick");
        assert!(extracted[0].contains_key("rlnAutopickFigureOfMerit"));
    }
}

/// `setup`'s picks as a RELION 3.1 AutoPick job: one `_autopick.star` per micrograph under
/// `AutoPick/job006/` and the `coords_suffix_autopick.star` node naming the micrographs; and
/// the same files listed in a RELION 4/5 `autopick.star`. A tiny model trained on the truth.
fn autopick_project(dir: &Path) -> usize {
    let n = setup(dir);
    to_coordinate_files(dir);
    let job = dir.join("AutoPick/job006/sim/micrographs");
    std::fs::create_dir_all(&job).unwrap();
    let mut index = String::from(
        "\n# version 50001\n\ndata_coordinate_files\n\nloop_\n_rlnMicrographName #1\n\
         _rlnMicrographCoordinates #2\n",
    );
    for m in ["sim_0001", "sim_0002"] {
        std::fs::rename(
            dir.join(format!("coords/sim/micrographs/{m}.star")),
            job.join(format!("{m}_autopick.star")),
        )
        .unwrap();
        index.push_str(&format!(
            "sim/micrographs/{m}.mrc AutoPick/job006/sim/micrographs/{m}_autopick.star\n"
        ));
    }
    std::fs::write(
        dir.join("AutoPick/job006/coords_suffix_autopick.star"),
        "micrographs.star\n",
    )
    .unwrap();
    std::fs::write(dir.join("AutoPick/job006/autopick.star"), index).unwrap();
    train_image_model(dir);
    n
}

fn external(dir: &Path, job: &str, inputs: &[&str], model: &str, extra: &[&str]) -> Output {
    let mut args = vec!["relion", "prune", "--o", job];
    args.extend(inputs);
    args.extend(["--j", "2", "--pipeline_control", job, "--model", model]);
    args.extend(["--image_only", "Yes", "--threshold", "0.01"]);
    args.extend(extra);
    Command::new(env!("CARGO_BIN_EXE_cryoprune"))
        .args(&args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// (node name, node type) of a job's RELION_OUTPUT_NODES.star.
fn nodes(dir: &Path, job: &str) -> Vec<(String, String)> {
    let star = StarFile::read(dir.join(job).join("RELION_OUTPUT_NODES.star")).unwrap();
    let l = star.block("output_nodes").unwrap().first_loop().unwrap();
    assert_eq!(l.columns[0], "rlnPipeLineNodeName");
    l.rows
        .iter()
        .map(|r| (r[0].to_string(), r[1].to_string()))
        .collect()
}

/// A finished RELION 3.1 job with coordinates: the exit file, numbered node types, and the
/// suffix node naming `setup`'s micrographs STAR.
fn assert_relion_31_coordinates_job(dir: &Path, job: &str) {
    assert!(dir.join(job).join("RELION_JOB_EXIT_SUCCESS").is_file());
    assert!(!dir.join(job).join("RELION_JOB_EXIT_FAILURE").exists());
    assert_eq!(
        nodes(dir, job),
        [
            (format!("{job}coords_suffix_cryoprune.star"), "2".into()),
            (format!("{job}logfile.pdf"), "13".into()),
        ]
    );
    let suffix = std::fs::read_to_string(dir.join(job).join("coords_suffix_cryoprune.star"));
    assert_eq!(suffix.unwrap().trim(), "micrographs.star");
}

/// RELION 3.1 runs `cryoprune relion prune` as an External job on its AutoPick coordinates:
/// the job leaves the exit file and output nodes 3.1 reads (numbered types), and the real
/// `relion_preprocess` extracts exactly the picks the job kept from the coordinate node it
/// wrote.
#[test]
fn an_external_job_prunes_relion_31_coordinates_that_relion_extracts() {
    if !relion_ready() {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("relion_external31");
    let n = autopick_project(&dir);
    let job = "External/job007/";
    let inputs = [
        "--in_mics",
        "micrographs.star",
        "--in_coords",
        "AutoPick/job006/coords_suffix_autopick.star",
    ];
    let o = external(&dir, job, &inputs, "model", &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_relion_31_coordinates_job(&dir, job);
    let pdf = std::fs::read(dir.join(job).join("logfile.pdf")).unwrap();
    assert!(pdf.starts_with(b"%PDF-1.4") && String::from_utf8_lossy(&pdf).contains("kept"));

    let mut kept = 0;
    for m in ["sim_0001", "sim_0002"] {
        let f = dir.join(format!("{job}sim/micrographs/{m}_cryoprune.star"));
        kept += rows(&f, "").len();
    }
    assert!(kept > 0 && kept <= n, "{kept} of {n} kept");
    relion_extract(
        &dir,
        "extracted",
        &["--coord_dir", job, "--coord_suffix", "_cryoprune.star"],
        false,
    );
    let extracted = rows(&dir.join("extracted.star"), "particles");
    assert_eq!(extracted.len(), kept, "RELION extracts every kept pick");

    // `prune` itself on the 3.1 job keeps the job's layout and node, so relion_preprocess
    // takes the pruned folder as it took the job's, and finds what the External job kept.
    let picks = "AutoPick/job006/coords_suffix_autopick.star";
    cryoprune_in(
        &dir,
        &[
            "prune",
            "--model",
            "model",
            "--micrographs",
            "micrographs.star",
            "--picks",
            picks,
            "--image-only",
            "--threshold",
            "0.01",
            "--out",
            "pruned31/",
        ],
    );
    let node = std::fs::read_to_string(dir.join("pruned31/coords_suffix_autopick.star"));
    assert_eq!(node.unwrap().trim(), "micrographs.star");
    relion_extract(
        &dir,
        "extracted_cli",
        &[
            "--coord_dir",
            "pruned31/",
            "--coord_suffix",
            "_autopick.star",
        ],
        false,
    );
    let extracted = rows(&dir.join("extracted_cli.star"), "particles");
    assert_eq!(
        extracted.len(),
        kept,
        "the same picks kept, found where RELION looks"
    );

    // A rerun replaces the outputs and the exit file, as RELION's "continue" would.
    let again = external(&dir, job, &inputs, "model", &[]);
    assert!(again.status.success(), "{}", text(&again));
}

/// RELION 4 and 5: an `autopick.star` index in, an index of the pruned files out, node types
/// as labels in the form RELION 5 writes them (fixture); particles pruned as a particles node;
/// and a job that cannot run ends with RELION_JOB_EXIT_FAILURE and the reason on stderr
/// (RELION's run.err), bad arguments included.
#[test]
fn an_external_job_speaks_relion_4_and_5_and_fails_as_relion_expects() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("relion_external5");
    let n = autopick_project(&dir);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/relion5/RELION_OUTPUT_NODES.star");
    let relion5 = StarFile::read(&fixture).unwrap();
    let relion5 = relion5.block("output_nodes").unwrap().first_loop().unwrap();
    let labels: Vec<&str> = relion5.rows.iter().map(|r| r.get(1)).collect();

    let job = "External/job008/";
    let o = external(
        &dir,
        job,
        &["--in_coords", "AutoPick/job006/autopick.star"],
        "model",
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(dir.join(job).join("RELION_JOB_EXIT_SUCCESS").is_file());
    let star = StarFile::read(dir.join(job).join("RELION_OUTPUT_NODES.star")).unwrap();
    let ours = star.block("output_nodes").unwrap().first_loop().unwrap();
    assert_eq!(ours.columns, relion5.columns, "RELION 5's columns");
    for (name, label) in nodes(&dir, job) {
        assert!(dir.join(&name).is_file(), "{name}");
        assert!(
            labels.iter().any(|l| l.starts_with(&label)),
            "{label} is not a RELION 5 node type"
        );
    }
    let index = rows(&dir.join(job).join("coordinates.star"), "coordinate_files");
    assert_eq!(index.len(), 2);
    let mut kept = 0;
    for r in &index {
        assert!(r["rlnMicrographName"].starts_with("sim/micrographs/sim_000"));
        kept += rows(&dir.join(&r["rlnMicrographCoordinates"]), "").len();
    }
    assert!(kept <= n);

    // A micrograph the index names without its coordinate file is left out, and said so.
    let index = std::fs::read_to_string(dir.join("AutoPick/job006/autopick.star")).unwrap();
    let more = "AutoPick/job006/autopick_more.star";
    let missing = "sim/micrographs/sim_0099.mrc AutoPick/job006/sim/micrographs/sim_0099.star\n";
    std::fs::write(dir.join(more), format!("{index}{missing}")).unwrap();
    let o = external(
        &dir,
        "External/job010/",
        &["--in_coords", more],
        "model",
        &[],
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains(&format!(
            "1 of the micrographs {more} names has no coordinate file (e.g. \
             sim/micrographs/sim_0099.mrc)"
        )),
        "{t}"
    );

    let job = "External/job009/";
    let o = external(&dir, job, &["--in_parts", "input.star"], "model", &[]);
    assert!(o.status.success(), "{}", text(&o));
    let parts = rows(&dir.join(job).join("particles.star"), "particles");
    assert!(!parts.is_empty() && parts.len() <= n);
    assert_eq!(
        nodes(&dir, job)[0],
        (
            format!("{job}particles.star"),
            "ParticlesData.star.relion".into()
        )
    );

    let job = "External/job010/";
    let o = external(
        &dir,
        job,
        &["--in_parts", "input.star"],
        "no_such_model",
        &[],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("no_such_model"), "{}", text(&o));
    assert!(dir.join(job).join("RELION_JOB_EXIT_FAILURE").is_file());
    assert!(!dir.join(job).join("RELION_JOB_EXIT_SUCCESS").exists());

    let job = "External/job011/";
    let o = external(
        &dir,
        job,
        &["--in_parts", "input.star"],
        "model",
        &["--no_such", "1"],
    );
    assert!(!o.status.success());
    assert!(dir.join(job).join("RELION_JOB_EXIT_FAILURE").is_file());
}

/// `cryoprune relion pick` as RELION runs it, with a tiny picker trained on `setup`'s particles.
/// RELION 3.1: a suffix node naming the micrographs STAR and a coordinate file per micrograph,
/// from which the real `relion_preprocess` extracts every pick. RELION 4/5: an index of the
/// coordinate files, through which the job folder reads back as its picks. A picker that is
/// not there ends the job in RELION_JOB_EXIT_FAILURE.
#[test]
fn an_external_job_picks_micrographs_that_relion_extracts() {
    if !relion_ready() {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("relion_pick");
    setup(&dir);
    cryoprune_in(
        &dir,
        &[
            "picker",
            "train",
            "--micrographs",
            "sim/micrographs/*.mrc",
            "--picks",
            "sim/particles.csv",
            "--box",
            "48",
            "--epochs",
            "1",
            "--validation",
            "1",
            "--out",
            "picker",
        ],
    );
    let pick = |job: &str, model: &str, extra: &[&str]| {
        let mut args = vec![
            "relion",
            "pick",
            "--o",
            job,
            "--in_mics",
            "micrographs.star",
        ];
        args.extend(["--j", "2", "--pipeline_control", job, "--model", model]);
        args.extend(["--threshold=-2"]);
        args.extend(extra);
        Command::new(env!("CARGO_BIN_EXE_cryoprune"))
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap()
    };
    let picks_in = |job: &str, suffix: &str| -> usize {
        ["sim_0001", "sim_0002"]
            .iter()
            .map(|m| rows(&dir.join(format!("{job}sim/micrographs/{m}{suffix}")), "").len())
            .sum()
    };

    let job = "External/job020/";
    let o = pick(job, "picker", &["--relion_version", "3.1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_relion_31_coordinates_job(&dir, job);
    let picked = picks_in(job, "_cryoprune.star");
    assert!(picked > 0, "{}", text(&o));
    assert!(text(&o).contains(&format!("{picked} picks on 2 micrographs")));
    relion_extract(
        &dir,
        "picked",
        &["--coord_dir", job, "--coord_suffix", "_cryoprune.star"],
        false,
    );
    let extracted = rows(&dir.join("picked.star"), "particles");
    assert_eq!(extracted.len(), picked, "RELION extracts every pick");
    assert!(!dir.join(job).join("cryoprune").exists(), "no staging left");

    let job = "External/job021/";
    let o = pick(job, "picker", &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        nodes(&dir, job)[0],
        (
            format!("{job}coordinates.star"),
            "MicrographsCoords.star.relion".into()
        )
    );
    let index = rows(&dir.join(job).join("coordinates.star"), "coordinate_files");
    let listed: Vec<(&str, &str)> = index
        .iter()
        .map(|r| {
            (
                r["rlnMicrographName"].as_str(),
                r["rlnMicrographCoordinates"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        ["sim_0001", "sim_0002"]
            .map(|m| (
                format!("sim/micrographs/{m}.mrc"),
                format!("{job}sim/micrographs/{m}_cryoprune.star")
            ))
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect::<Vec<_>>()
    );
    let set = PickSet::read(&[dir.join(job)], None).unwrap();
    assert_eq!(set.len(), picked, "the same picker, the same picks");
    assert_eq!(
        set.micrographs[0].micrograph,
        "sim/micrographs/sim_0001.mrc"
    );

    // `pick` run outside the project names the micrographs as the STAR does, so its files
    // and index are RELION's.
    let outside = dir.join("sim");
    cryoprune_in(
        &outside,
        &[
            "pick",
            "--model",
            "../picker",
            "--micrographs",
            "../micrographs.star",
            "--out",
            "picks/",
        ],
    );
    let index = rows(&outside.join("picks/autopick.star"), "coordinate_files");
    let names: Vec<&str> = index
        .iter()
        .map(|r| r["rlnMicrographName"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "sim/micrographs/sim_0001.mrc",
            "sim/micrographs/sim_0002.mrc"
        ]
    );
    // Its paths relative to the project folder, as the STAR's are.
    let file = &index[0]["rlnMicrographCoordinates"];
    assert_eq!(file, "sim/picks/sim/micrographs/sim_0001.star");
    assert!(dir.join(file).is_file());

    let job = "External/job022/";
    let o = pick(job, "no_such_picker", &[]);
    assert!(!o.status.success() && text(&o).contains("no_such_picker"));
    assert!(dir.join(job).join("RELION_JOB_EXIT_FAILURE").is_file());
}

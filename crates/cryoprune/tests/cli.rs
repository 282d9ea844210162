//! End-to-end tests of the `cryoprune` binary.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{cryoprune, data, model_json, s, text};

#[test]
fn help_lists_subcommands_with_examples() {
    let o = cryoprune(&["--help"]);
    assert!(o.status.success());
    for sub in [
        "info",
        "convert",
        "extract",
        "simulate",
        "train",
        "evaluate",
        "fewshot",
        "demo",
        "prune",
        "pretrain",
        "relion",
        "merge",
        "label",
        "picker",
        "pick",
        "evaluate-picks",
        "curate",
    ] {
        assert!(text(&o).contains(sub), "{sub} missing from --help");
        // `relion` groups the RELION jobs; each job shows the examples.
        let h = match sub {
            "relion" => cryoprune(&[sub, "prune", "--help"]),
            "picker" => cryoprune(&[sub, "train", "--help"]),
            _ => cryoprune(&[sub, "--help"]),
        };
        let t = text(&h);
        let examples = t.split_once("Examples:").map_or("", |(_, e)| e);
        let n = examples
            .lines()
            .filter(|l| l.trim_start().starts_with(&format!("cryoprune {sub}")))
            .count();
        assert!((2..=4).contains(&n), "{t}");
    }
}

#[test]
fn convert_round_trip_through_the_cli() {
    let Some(d) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let topaz = d.join("empiar-10017/picks/topaz");
    let star = tmp.path().join("picks.star");
    let o = cryoprune(&[
        "convert",
        "--in",
        s(&topaz),
        "--to",
        "star",
        "--out",
        s(&star),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let wrote = format!("wrote 3052 picks on 4 micrographs as star to {}", s(&star));
    assert!(text(&o).contains(&wrote), "{}", text(&o));
    let cs = tmp.path().join("picks.cs");
    let mics = format!("{}/*.jpg", d.join("empiar-10017/micrographs").display());
    let o = cryoprune(&[
        "convert",
        "--in",
        s(&star),
        "--to",
        "cs",
        "--micrographs",
        &mics,
        "--out",
        s(&cs),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let back = tmp.path().join("back");
    let o = cryoprune(&[
        "convert",
        "--in",
        s(&cs),
        "--to",
        "box",
        "--box",
        "180",
        "--out",
        s(&back),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    for f in std::fs::read_dir(&topaz).unwrap() {
        let f = f.unwrap().path();
        let orig = std::fs::read_to_string(&f).unwrap();
        let copy = std::fs::read_to_string(back.join(f.file_name().unwrap())).unwrap();
        for (a, b) in orig.lines().zip(copy.lines()) {
            let na: Vec<f64> = a.split_whitespace().map(|t| t.parse().unwrap()).collect();
            let nb: Vec<f64> = b.split_whitespace().map(|t| t.parse().unwrap()).collect();
            for i in 0..4 {
                assert!((na[i] - nb[i]).abs() < 0.01, "{a} vs {b}");
            }
            assert!(
                (na[4] - nb[4]).abs() < 1e-5 * na[4].abs().max(1.0),
                "score {a} vs {b}"
            );
        }
        assert_eq!(orig.lines().count(), copy.lines().count());
    }
    let o = cryoprune(&["info", s(&cs)]);
    assert!(
        o.status.success() && text(&o).contains("3052"),
        "{}",
        text(&o)
    );
}

/// A RELION 3.0 coordinate file names its micrograph only by its own name
/// (`mic_autopick.star`); converted with `--micrographs`, the picks name the micrograph they
/// lie on, so a STAR or `.cs` leads to it and files per micrograph are named for it. Real files:
/// a RELION autopick file and its micrograph (MicrographCleaner's test data).
#[test]
fn converted_picks_name_the_micrograph_they_were_matched_to() {
    let Some(d) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cleaner = d.join("sources/micrograph_cleaner_em");
    let mic = cleaner.join("mics/Ucsf_stack_1142_DW.mrc");
    let auto = tmp.path().join("Ucsf_stack_1142_DW_autopick.star");
    std::fs::copy(
        cleaner.join("inCoords/relion/Ucsf_stack_1142_DW_autopick.star"),
        &auto,
    )
    .unwrap();
    let convert = |input: &Path, to: &str, out: &Path| {
        let o = cryoprune(&[
            "convert",
            "--in",
            s(input),
            "--to",
            to,
            "--box",
            "100",
            "--micrographs",
            s(&mic),
            "--out",
            s(out),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        text(&o)
    };
    let boxes = tmp.path().join("box");
    convert(&auto, "box", &boxes);
    let names: Vec<_> = std::fs::read_dir(&boxes)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["Ucsf_stack_1142_DW.box"]);
    // A STAR from a coordinate STAR stays a coordinate file (its rows as read); from the
    // `.box` files it is a particle STAR naming each pick's micrograph.
    let star = tmp.path().join("all.star");
    convert(&boxes, "star", &star);
    let read = cryoprune_formats::StarFile::read(&star).unwrap();
    let table = read.blocks[0].first_loop().unwrap();
    let named = table.column("rlnMicrographName").unwrap();
    assert_eq!(table.rows.len(), 45);
    assert!(table.rows.iter().all(|row| row[named] == *s(&mic)));
    let cs = tmp.path().join("all.cs");
    convert(&auto, "cs", &cs);
    let info = text(&cryoprune(&["info", s(&cs)]));
    assert!(info.contains(&format!("{} (45)", s(&mic))), "{info}");
    // Through a RELION micrographs STAR, the name is the list's (the project's path), wherever
    // the project folder is.
    let project = tmp.path().join("project");
    std::fs::create_dir_all(project.join("MotionCorr/job002")).unwrap();
    std::fs::copy(
        &mic,
        project.join("MotionCorr/job002/Ucsf_stack_1142_DW.mrc"),
    )
    .unwrap();
    let list = project.join("micrographs_ctf.star");
    std::fs::write(
        &list,
        "data_micrographs\nloop_\n_rlnMicrographName\nMotionCorr/job002/Ucsf_stack_1142_DW.mrc\n",
    )
    .unwrap();
    let listed = tmp.path().join("listed.csv");
    let o = cryoprune(&[
        "convert",
        "--in",
        s(&boxes),
        "--to",
        "csv",
        "--micrographs",
        s(&list),
        "--out",
        s(&listed),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let rows = std::fs::read_to_string(&listed).unwrap();
    assert_eq!(
        rows.matches("\nMotionCorr/job002/Ucsf_stack_1142_DW.mrc,")
            .count(),
        45,
        "{rows}"
    );
    // Picks that name their micrograph's file already keep that name: a RELION project's path.
    let project = tmp.path().join("particles.star");
    let body = std::fs::read_to_string(&star).unwrap();
    std::fs::write(
        &project,
        body.replace(s(&mic), "MotionCorr/job002/Ucsf_stack_1142_DW.mrc"),
    )
    .unwrap();
    let csv = tmp.path().join("project.csv");
    convert(&project, "csv", &csv);
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(
        rows.matches("\nMotionCorr/job002/Ucsf_stack_1142_DW.mrc,")
            .count(),
        45,
        "{rows}"
    );
    // Two pick files of one micrograph keep their own names, or one would replace the other.
    let manual = tmp.path().join("Ucsf_stack_1142_DW_manualpick.star");
    std::fs::copy(&auto, &manual).unwrap();
    let both = tmp.path().join("both");
    let o = cryoprune(&[
        "convert",
        "--in",
        s(&auto),
        s(&manual),
        "--to",
        "box",
        "--box",
        "100",
        "--micrographs",
        s(&mic),
        "--out",
        s(&both),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("keep that name: ") && text(&o).contains("also the micrograph"),
        "{}",
        text(&o)
    );
    for stem in [
        "Ucsf_stack_1142_DW_autopick",
        "Ucsf_stack_1142_DW_manualpick",
    ] {
        let f = both.join(format!("{stem}.box"));
        assert_eq!(std::fs::read_to_string(f).unwrap().lines().count(), 45);
    }
}

/// A folder of pick files reads as the commands read it; a folder of micrographs says why it
/// is none of the folders `info` knows.
#[test]
fn info_describes_a_folder_of_picks() {
    let Some(d) = data() else { return };
    let o = cryoprune(&["info", "--json", s(&d.join("empiar-10017/picks/topaz"))]);
    assert!(o.status.success(), "{}", text(&o));
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (&info["type"], &info["files"], &info["picks"]),
        (
            &serde_json::json!("box picks"),
            &serde_json::json!(4),
            &serde_json::json!(3052)
        ),
        "{info}"
    );
    let o = cryoprune(&["info", s(&d.join("empiar-10017/micrographs"))]);
    let t = text(&o);
    assert!(
        !o.status.success()
            && t.contains("is no model or picker folder")
            && t.contains("holds no pick files"),
        "{t}"
    );
    // A micrographs STAR (Topaz's copy of EMPIAR-10025's CTF parameters, RELION 3.0) holds no
    // picks: it is named for what it is, a list `--micrographs` takes.
    let ctf = d.join("sources/topaz-github/test_data/EMPIAR-10025/rawdata/ctf_params.star");
    let o = cryoprune(&["info", "--json", s(&ctf)]);
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        info["micrographs_listed"],
        "30 micrographs: a list of micrographs, as --micrographs takes one",
        "{info}"
    );
    assert!(info.get("picks_note").is_none(), "{info}");
}

#[test]
fn bad_input_is_one_clear_line_and_no_output() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.box");
    std::fs::write(&bad, "10 20 180 180\n30 40 180\n").unwrap();
    let out = tmp.path().join("out.star");
    let o = cryoprune(&["convert", "--in", s(&bad), "--to", "star", "--out", s(&out)]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("bad.box: line 2: row has 3 columns"), "{err}");
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "no partial files left"
    );
    let o = cryoprune(&["info", s(&tmp.path().join("missing.mrc"))]);
    assert!(!o.status.success() && text(&o).contains("missing.mrc"));
}

/// Numbers no run can use are refused with the flag named, before anything is written: each
/// of these once ran to a panic, a minute's hang or coordinates of 0 and NaN.
#[test]
fn nonsense_numbers_are_refused_with_the_flag_named() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = tmp.path().join("sim");
    let o = cryoprune(&[
        "simulate",
        "--out",
        s(&sim),
        "--count",
        "2",
        "--size",
        "256",
        "--no-previews",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let paths = ["micrographs/*.mrc", "truth.csv", "picks.star"].map(|p| sim.join(p));
    let [mics, truth, picks] = [0, 1, 2].map(|i| s(&paths[i]));
    let out = tmp.path().join("out");
    let train = [
        "train",
        "--micrographs",
        mics,
        "--labels",
        truth,
        "--box",
        "48",
    ];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--epochs", "0"], "--epochs 0"),
        (vec!["--input-size", "3"], "--input-size 8 or more"),
        (vec!["--val-fraction", "1.5"], "--val-fraction 1.5"),
        (vec!["--threads", "100000"], "--threads 100000"),
        (
            vec!["--unlabelled", picks, "--unlabelled-max", "0"],
            "--unlabelled-max 0",
        ),
        (vec!["--angpix", "NaN"], "--angpix"),
        (vec!["--momentum", "1"], "--momentum is from 0 to below 1"),
        (vec!["--weight-decay=-1"], "--weight-decay is 0 or more"),
        (
            vec!["--class-weights=-1,1,1,1,1"],
            "expected numbers of 0 or more",
        ),
        (vec!["--batch", "0"], "--batch must be at least 1, not 0"),
        (
            vec!["--step-every", "0"],
            "--step-every must be at least 1, not 0",
        ),
        (
            vec!["--folds", "1"],
            "--folds 1: cross-validating takes at least 2",
        ),
    ];
    let refused = |args: &[&str], says: &str| {
        let o = cryoprune(args);
        let t = text(&o);
        assert!(
            !o.status.success() && !t.contains("panicked"),
            "{args:?}: {t}"
        );
        assert!(t.contains(says), "{args:?}: {t}");
    };
    // Every case stops before the first epoch, so none trains.
    for (more, says) in cases {
        let args = [&train[..], &more, &["--out", s(&out)]].concat();
        refused(&args, says);
        assert!(!out.exists(), "{args:?} left an output");
    }
    // Labels that all lie off their micrograph (a binned picker's coordinates, say): train
    // warned that each class had 0 labels before failing (and evaluate scored nothing).
    let off = tmp.path().join("off.csv");
    std::fs::write(
        &off,
        "micrograph,x,y,label\nsim_0001,-5000,10,particle\nsim_0001,99999,10,junk\n",
    )
    .unwrap();
    let args = [
        &train[..3],
        &["--labels", s(&off), "--box", "48", "--out", s(&out)],
    ]
    .concat();
    refused(
        &args,
        "none of the 2 labelled picks (on 1 micrograph) could be cut: 2 lie outside their \
         micrograph",
    );
    assert!(!out.exists());
    // ...or all those of one class: the model trained on and called every pick the other.
    std::fs::write(
        &off,
        "micrograph,x,y,label\nsim_0001,100,100,particle\nsim_0001,99999,10,junk\n",
    )
    .unwrap();
    refused(
        &args,
        "class `junk` has no labelled pick left once the picks were cut",
    );
    assert!(!out.exists());
    // A box in another unit than the micrographs' pixels (Å, or unbinned pixels) cut boxes
    // of nearly all padding, and the picker trained on targets covering whole micrographs.
    let big = [&train[..5], &["--box", "4000", "--out", s(&out)]].concat();
    refused(
        &big,
        "the box (4000 px) is larger than the micrograph (256x256 px)",
    );
    assert!(!out.exists());
    let picker_train = ["picker", "train", "--micrographs", mics, "--picks", picks];
    refused(
        &[&picker_train[..], &["--box", "4000", "--out", s(&out)]].concat(),
        "the particle is 2667 px across (from --box or --particle-diameter)",
    );
    assert!(!out.exists());
    let extract = [
        "extract",
        "--micrographs",
        mics,
        "--picks",
        picks,
        "--box",
        "48",
    ];
    // RELION reads `000001@stack` by the stack's extension: a `.mrc` is a 3D map to it, and a
    // stack by any other name no format at all, so the STAR file would lead nowhere.
    for name in ["particles.star", "particles.mrc", "particles"] {
        let stack = tmp.path().join(name);
        refused(
            &[&extract[..], &["--out", s(&stack)]].concat(),
            "is the particle stack; give it the extension .mrcs, the only one RELION reads",
        );
        assert!(!stack.exists() && !stack.with_extension("star").exists());
    }
    let csv = tmp.path().join("picks.csv");
    refused(
        &[
            "convert",
            "--in",
            picks,
            "--to",
            "csv",
            "--scale",
            "0",
            "--out",
            s(&csv),
        ],
        "--scale",
    );
    refused(
        &[
            "evaluate-picks",
            "--picks",
            picks,
            "--truth",
            truth,
            "--radius",
            "5",
            "--threshold",
            "NaN",
        ],
        "expected a finite number",
    );
    refused(
        &[
            "prune",
            "--model",
            s(&out),
            "--micrographs",
            mics,
            "--picks",
            picks,
            "--batch",
            "0",
            "--out",
            s(&out),
        ],
        "--batch must be at least 1",
    );
    refused(
        &[
            "simulate",
            "--out",
            s(&out),
            "--count",
            "1",
            "--size",
            "100000",
        ],
        "--size 100000: at most 16384",
    );
    // No trial wrote an empty table; K = 0 failed deep in training ("no training examples");
    // test labels that are the training labels scored the shots themselves.
    for (more, says) in [
        (["--trials", "0"], "--trials must be at least 1, not 0"),
        (["--shots", "0"], "--shots must be at least 1, not 0"),
        (
            ["--test-labels", truth],
            "labelled picks are also in --labels",
        ),
    ] {
        let args = [&["fewshot"][..], &train[1..], &more, &["--out", s(&out)]].concat();
        refused(&args, says);
        assert!(!out.exists(), "{args:?} left an output");
    }
    // Rendering allocates the cube of the particle's size in pixels: this panicked.
    refused(
        &[
            "simulate",
            "--out",
            s(&out),
            "--count",
            "1",
            "--pixel",
            "1e-9",
        ],
        "too small or too large for 1024 px micrographs (change --pixel)",
    );
    refused(
        &["simulate", "--out", s(&out), "--map", "6ny1.pdb"],
        "--map 6ny1.pdb: an atomic model, not a map; give it with --model",
    );
    refused(
        &[
            &picker_train[..],
            &["--particle-diameter", "0", "--out", s(&out)],
        ]
        .concat(),
        "--particle-diameter",
    );
    // Outputs that would replace an input, or cannot be made, are refused before the work.
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).unwrap();
    let held = model.join("validation.csv");
    std::fs::copy(&paths[1], &held).unwrap();
    refused(
        &[
            "train",
            "--micrographs",
            mics,
            "--labels",
            s(&held),
            "--box",
            "48",
            "--out",
            s(&model),
        ],
        "the model would be saved over",
    );
    assert_eq!(
        std::fs::read(&held).unwrap(),
        std::fs::read(&paths[1]).unwrap()
    );
    let stack = paths[1].join("stack.mrcs");
    for (stack, says) in [
        (&sim, "names a folder; give a file name"),
        (&stack, "truth.csv is a file, so the folder cannot be made"),
    ] {
        refused(&[&extract[..], &["--out", s(stack)]].concat(), says);
    }
    assert!(!out.exists() && !csv.exists());
}

#[test]
fn convert_never_overwrites_its_input() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("picks.csv");
    let original = "micrograph,x,y,score,note\nm1,10,20,0.5,keep me\n";
    std::fs::write(&input, original).unwrap();
    let o = cryoprune(&[
        "convert",
        "--in",
        s(&input),
        "--to",
        "csv",
        "--out",
        s(&input),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("refusing to write over an input file"),
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::read_to_string(&input).unwrap(), original);
    // Same format elsewhere: a faithful copy with the unknown column kept.
    let copy = tmp.path().join("copy.csv");
    assert!(cryoprune(&[
        "convert",
        "--in",
        s(&input),
        "--to",
        "csv",
        "--out",
        s(&copy)
    ])
    .status
    .success());
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), original);
}

#[test]
fn demo_runs_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let o = cryoprune(&["demo", "--fast", "--out", s(&out)]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("demo complete"), "{t}");
    assert!(t.contains("$ cryoprune prune --model"), "{t}");
    assert!(t.contains("against the simulated truth"), "{t}");
    // Seconds of training still keep particles (it once kept none, which read as a failure).
    assert!(!t.contains("kept 0 with"), "{t}");
    // The network is adapted to the demo's own picks before the labels train it.
    assert!(
        t.contains("--unlabelled") && t.contains("adapted to these micrographs"),
        "{t}"
    );
    for f in [
        "labels.csv",
        "model/model.json",
        "pruned/picks.star",
        "scores.csv",
        "report.html",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
}

/// Runs `cryoprune extract` on one micrograph and its picks, with further arguments.
fn extract(mic: &Path, picks: &Path, out: &Path, more: &[&str]) -> Output {
    let mut args = vec![
        "extract",
        "--micrographs",
        s(mic),
        "--picks",
        s(picks),
        "--out",
        s(out),
    ];
    args.extend(more);
    cryoprune(&args)
}

/// Reads every image of a stack.
fn stack(path: &Path) -> (usize, Vec<Vec<f32>>, f32) {
    let f = cryoprune_formats::MrcFile::open(path).unwrap();
    let n = f.header().nx;
    let imgs = (0..f.n_sections())
        .map(|i| f.read_section(i).unwrap())
        .collect();
    (n, imgs, f.header().pixel_size().unwrap_or(0.0))
}

fn argmax(v: &[f32], n: usize) -> (usize, usize) {
    let i = (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b });
    (i % n, i / n)
}

#[test]
fn extract_puts_every_pick_at_the_box_centre_for_even_odd_and_resampled_boxes() {
    use cryoprune_formats::mrc::{write_mrc, Mode, WriteKind};
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (nx, ny) = (400usize, 300usize);
    let at = [(60, 70), (200, 150), (333, 91), (121, 222), (250, 240)];
    let mut img = vec![0.0f32; nx * ny];
    // A faint gradient so the background is not flat, a bright dot at each pick.
    for y in 0..ny {
        for x in 0..nx {
            img[y * nx + x] = (x + y) as f32 * 1e-3;
        }
    }
    for &(x, y) in &at {
        img[y * nx + x] = 10.0;
    }
    let mic = t.join("mic_001.mrc");
    write_mrc(
        &mic,
        (nx, ny, 1),
        &img,
        Mode::Float32,
        WriteKind::ImageOrStack,
        Some(1.2),
    )
    .unwrap();
    let mut star = String::from("data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n");
    for &(x, y) in &at {
        star.push_str(&format!("{x} {y}\n"));
    }
    let picks = t.join("mic_001_autopick.star");
    std::fs::write(&picks, star).unwrap();
    for (b, sz) in [(48, 48), (49, 49), (48, 20), (49, 21), (45, 64)] {
        let out = t.join(format!("p{b}_{sz}.mrcs"));
        let (b_arg, sz_arg) = (b.to_string(), sz.to_string());
        let more = ["--box", &b_arg, "--size", &sz_arg, "--threads", "2"];
        let o = extract(&mic, &picks, &out, &more);
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            text(&o).contains(&format!("extracted {} particles", at.len())),
            "{}",
            text(&o)
        );
        let (n, imgs, px) = stack(&out);
        assert_eq!((n, imgs.len()), (sz, at.len()));
        assert!(
            (px as f64 - 1.2 * b as f64 / sz as f64).abs() < 1e-5,
            "{px}"
        );
        for (k, im) in imgs.iter().enumerate() {
            assert_eq!(argmax(im, n), (sz / 2, sz / 2), "box {b} -> {sz}, pick {k}");
        }
        let st = cryoprune_formats::StarFile::read(out.with_extension("star")).unwrap();
        let optics = st.block("optics").unwrap().first_loop().unwrap();
        let col = |name: &str| optics.column(name).unwrap();
        assert_eq!(optics.rows.get(0)[col("rlnImageSize")], sz.to_string());
        let want_px = 1.2 * b as f64 / sz as f64;
        let got_px: f64 = optics.rows.get(0)[col("rlnImagePixelSize")]
            .parse()
            .unwrap();
        assert!((got_px - want_px).abs() < 1e-5);
        let parts = st.block("particles").unwrap().first_loop().unwrap();
        let name = parts.column("rlnImageName").unwrap();
        let cx = parts.column("rlnCoordinateX").unwrap();
        for (k, row) in parts.rows.iter().enumerate() {
            assert_eq!(row[name], format!("{:06}@{}", k + 1, out.display()));
            assert_eq!(row[cx].parse::<f64>().unwrap(), at[k].0 as f64);
        }
    }
}

/// A movie given as a micrograph, or a blank one, would give particles of noise or nothing
/// with no word of why: both are named.
#[test]
fn a_movie_or_a_blank_image_given_as_a_micrograph_is_named() {
    use cryoprune_formats::mrc::{write_mrc, Mode, WriteKind};
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (nx, ny) = (128usize, 96usize);
    let frames: Vec<f32> = (0..nx * ny * 3).map(|i| ((i * 31) % 17) as f32).collect();
    let cases = [
        (
            "movie_001",
            (nx, ny, 3),
            frames,
            "holds more than one image; the first is used",
        ),
        (
            "blank_001",
            (nx, ny, 1),
            vec![0.5; nx * ny],
            "every pixel is 0.5: a blank micrograph",
        ),
    ];
    for (name, shape, data, says) in cases {
        let mic = t.join(format!("{name}.mrc"));
        write_mrc(
            &mic,
            shape,
            &data,
            Mode::Float32,
            WriteKind::ImageOrStack,
            Some(1.0),
        )
        .unwrap();
        let picks = t.join(format!("{name}.csv"));
        std::fs::write(&picks, format!("micrograph,x,y\n{name},64,48\n")).unwrap();
        let o = extract(
            &mic,
            &picks,
            &t.join(format!("{name}.mrcs")),
            &["--box", "32"],
        );
        assert!(
            o.status.success() && text(&o).contains(says),
            "{}",
            text(&o)
        );
    }
}

/// What RELION would refuse is said (odd sizes) or refused (--relion-strict); dead pixels
/// (NaN, infinities) are counted, named and kept out of every particle; a killed run's
/// temporary files are cleared.
#[test]
fn extract_warns_about_odd_sizes_and_dead_pixels() {
    use cryoprune_formats::mrc::{write_mrc, Mode, WriteKind};
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (nx, ny) = (200usize, 160usize);
    let mut img: Vec<f32> = (0..nx * ny).map(|i| ((i * 7919) % 101) as f32).collect();
    for (i, v) in img.iter_mut().enumerate().filter(|(i, _)| i % 89 == 0) {
        *v = if i % 2 == 0 { f32::NAN } else { f32::INFINITY };
    }
    let dead = img.iter().filter(|v| !v.is_finite()).count();
    let mic = t.join("mic_001.mrc");
    write_mrc(
        &mic,
        (nx, ny, 1),
        &img,
        Mode::Float32,
        WriteKind::ImageOrStack,
        Some(1.0),
    )
    .unwrap();
    let picks = t.join("mic_001.csv");
    std::fs::write(&picks, "micrograph,x,y\nmic_001,100,80\nmic_001,60,50\n").unwrap();
    // What a killed run leaves: the stack and STAR under their temporary names.
    let stale = [
        t.join(".none.mrcs.Xy12ab.partial"),
        t.join(".none.star.Qz34cd.partial"),
    ];
    for p in &stale {
        std::fs::write(p, "half a stack").unwrap();
    }
    for norm in ["none", "meanstd", "robust"] {
        let out = t.join(format!("{norm}.mrcs"));
        let o = extract(&mic, &picks, &out, &["--box", "49", "--normalize", norm]);
        let msg = text(&o);
        assert!(o.status.success(), "{msg}");
        assert!(msg.contains("--box 49 is odd"), "{msg}");
        assert!(
            msg.contains(&format!("{dead} of {} pixels are not finite", nx * ny)),
            "{msg}"
        );
        let (_, imgs, _) = stack(&out);
        assert_eq!(imgs.len(), 2);
        assert!(imgs.iter().flatten().all(|v| v.is_finite()), "{norm}");
    }
    assert!(
        stale.iter().all(|p| !p.exists()),
        "a rerun clears stale partials"
    );
    let out = t.join("strict.mrcs");
    let o = extract(
        &mic,
        &picks,
        &out,
        &["--box", "48", "--size", "25", "--relion-strict"],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("--size 25 is odd"), "{}", text(&o));
    assert!(!out.exists());
}

#[test]
fn extract_on_real_topaz_picks_skips_or_pads_edge_boxes_and_says_so() {
    let Some(d) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mic = d.join("empiar-10017/micrographs/Falcon_2012_06_12-14_33_35_0.jpg");
    let picks = d.join("empiar-10017/picks/topaz/Falcon_2012_06_12-14_33_35_0.box");
    let n_picks = std::fs::read_to_string(&picks)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    let skip = tmp.path().join("skip.mrcs");
    let more = [
        "--box",
        "180",
        "--size",
        "64",
        "--angpix",
        "1.77",
        "--lowpass",
        "20",
    ];
    let o = extract(&mic, &picks, &skip, &more);
    assert!(o.status.success(), "{}", text(&o));
    let (n, kept, _) = stack(&skip);
    let skipped: usize = text(&o)
        .lines()
        .find(|l| l.contains("picks skipped: their box reaches past"))
        .map_or(0, |l| l.split_whitespace().next().unwrap().parse().unwrap());
    assert!(skipped > 0, "{}", text(&o));
    assert_eq!(kept.len() + skipped, n_picks);
    // RELION normalisation: background (outside 75% of the half box) has mean 0, std 1.
    let r = 0.375 * n as f64;
    for im in &kept {
        let bg: Vec<f64> = (0..n * n)
            .filter(|i| ((i % n) as f64 - 32.0).hypot((i / n) as f64 - 32.0) > r)
            .map(|i| im[i] as f64)
            .collect();
        let mean = bg.iter().sum::<f64>() / bg.len() as f64;
        let var = bg.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / bg.len() as f64;
        assert!(
            mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3,
            "{mean} {var}"
        );
    }

    let pad = tmp.path().join("pad.mrcs");
    let more = ["--box", "180", "--size", "64", "--edge", "noise"];
    let o = extract(&mic, &picks, &pad, &more);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "{skipped} boxes reached past the micrograph edge and were padded"
        )),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("no pixel size"),
        "JPEG has no pixel size: {}",
        text(&o)
    );
    assert_eq!(stack(&pad).1.len(), n_picks);
}

/// A RELION micrographs STAR (CtfFind's `micrographs_ctf.star`, its names relative to the
/// project folder, found from another working folder) serves as --micrographs and cuts what
/// the same micrographs given as paths cut.
#[test]
fn a_micrographs_star_serves_as_the_micrographs() {
    let Some(d) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("project");
    std::fs::create_dir_all(project.join("CtfFind/job003")).unwrap();
    std::os::unix::fs::symlink(
        d.join("empiar-10017/micrographs"),
        project.join("Micrographs"),
    )
    .unwrap();
    let names = [
        "Falcon_2012_06_12-14_33_35_0",
        "Falcon_2012_06_12-15_17_31_0",
    ];
    let mut star = String::from(
        "data_optics\nloop_\n_rlnOpticsGroup #1\n1\n\ndata_micrographs\nloop_\n\
         _rlnMicrographName #1\n_rlnOpticsGroup #2\n",
    );
    for n in names {
        star.push_str(&format!("Micrographs/{n}.jpg 1\n"));
    }
    let list = project.join("CtfFind/job003/micrographs_ctf.star");
    std::fs::write(&list, star).unwrap();
    let paths: Vec<String> = names
        .iter()
        .map(|n| s(&d.join(format!("empiar-10017/micrographs/{n}.jpg"))).to_string())
        .collect();
    let picks = d.join("empiar-10017/picks/topaz");
    let extract = |mics: Vec<&str>, out: &Path| {
        let mut args = vec!["extract", "--micrographs"];
        args.extend(mics);
        args.extend([
            "--picks",
            s(&picks),
            "--box",
            "180",
            "--size",
            "32",
            "--out",
            s(out),
        ]);
        let o = cryoprune(&args);
        assert!(o.status.success(), "{}", text(&o));
        std::fs::read(out).unwrap()
    };
    let by_list = extract(vec![s(&list)], &tmp.path().join("list.mrcs"));
    let by_path = extract(
        paths.iter().map(String::as_str).collect(),
        &tmp.path().join("p.mrcs"),
    );
    assert!(by_list.len() > 100_000);
    assert_eq!(by_list, by_path);
    std::fs::write(
        &list,
        "data_micrographs\nloop_\n_rlnMicrographName #1\nMicrographs/x.mrc\n",
    )
    .unwrap();
    let o = cryoprune(&[
        "extract",
        "--micrographs",
        s(&list),
        "--picks",
        s(&picks),
        "--box",
        "180",
        "--out",
        s(&tmp.path().join("x.mrcs")),
    ]);
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("line 4: micrograph Micrographs/x.mrc not found"),
        "{t}"
    );
}

#[test]
fn extract_errors_name_the_problem_and_write_nothing() {
    let Some(d) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mic = d.join("empiar-10017/micrographs/Falcon_2012_06_12-14_33_35_0.jpg");
    let picks = d.join("empiar-10017/picks/topaz/Falcon_2012_06_12-14_33_35_0.box");
    let other = d.join("empiar-10017/picks/topaz/Falcon_2012_06_12-15_17_31_0.box");
    let out = tmp.path().join("p.mrcs");
    let cases: [(Vec<&str>, &str); 5] = [
        (
            vec!["--picks", s(&picks), "--box", "180", "--lowpass", "20"],
            "no pixel size in the file",
        ),
        (
            vec!["--picks", s(&other), "--box", "180"],
            "no micrograph named in the picks (e.g. `Falcon_2012_06_12-15_17_31_0`) matches the \
             micrograph given (e.g. `Falcon_2012_06_12-14_33_35_0`)",
        ),
        (
            vec!["--picks", s(&picks), "--box", "180", "--bg-radius", "200"],
            "leaves no background",
        ),
        (
            vec!["--picks", s(&picks), "--box", "4000"],
            "no particle extracted",
        ),
        (
            vec!["--picks", s(&picks), "--box", "5000"],
            "the box (5000 px) is larger than the micrograph (4096x4096 px)",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["extract", "--micrographs", s(&mic), "--out", s(&out)];
        all.extend(args);
        let o = cryoprune(&all);
        assert!(!o.status.success());
        let t = text(&o);
        assert!(t.contains(want), "{all:?}: {t}");
        assert!(
            t.trim().lines().last().unwrap().starts_with("error: "),
            "{t}"
        );
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            0,
            "{all:?} left files"
        );
    }
    let o = extract(&mic, &picks, &picks, &["--box", "180"]);
    assert!(
        !o.status.success() && text(&o).contains("input"),
        "{}",
        text(&o)
    );
}

/// Every file under `dir`, relative path -> bytes.
fn tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn simulate_is_byte_identical_for_a_seed_and_its_picks_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str, format: &str| {
        let out = tmp.path().join(name);
        let o = cryoprune(&[
            "simulate",
            "--out",
            s(&out),
            "--count",
            "3",
            "--size",
            "384",
            "--seed",
            seed,
            "--format",
            format,
            "--threads",
            "2",
        ]);
        assert!(o.status.success(), "{}", text(&o));
        out
    };
    let a = tree(&run("a", "5", "star"));
    let b = tree(&run("b", "5", "star"));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert!(a.len() >= 3 + 3 + 2, "{:?}", a.keys());
    for (k, v) in &a {
        assert!(
            v == &b[k],
            "{} differs between runs with the same seed",
            k.display()
        );
    }
    let c = tree(&run("c", "6", "star"));
    assert_ne!(
        a[Path::new("micrographs/sim_0001.mrc")],
        c[Path::new("micrographs/sim_0001.mrc")]
    );

    // The picker can be told to miss every particle and pick no empty ice.
    let none = run("e", "5", "csv");
    let o = cryoprune(&[
        "simulate",
        "--out",
        s(&none),
        "--count",
        "1",
        "--size",
        "384",
        "--picker",
        "miss=1,empty=0,carbon=0,edge=0,ice=0,aggregate=0",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let truth = std::fs::read_to_string(none.join("truth.csv")).unwrap();
    assert_eq!(truth.lines().count(), 1, "{truth}");
    let o = cryoprune(&["simulate", "--out", s(&none), "--picker", "miss=2"]);
    assert!(
        !o.status.success() && text(&o).contains("out of range"),
        "{}",
        text(&o)
    );

    // Each micrograph's tags, as labels `train` reads; --defects adds the flaws to reject.
    let tags = std::fs::read_to_string(tmp.path().join("a/micrograph_tags.csv")).unwrap();
    assert!(
        tags.starts_with("micrograph,labels\nmicrographs/sim_0001.mrc,"),
        "{tags}"
    );
    assert_eq!(tags.lines().count(), 4);
    let flawed = tmp.path().join("f");
    let o = cryoprune(&[
        "simulate",
        "--out",
        s(&flawed),
        "--count",
        "2",
        "--size",
        "384",
        "--no-previews",
        "--defects",
        "all=1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let tags = std::fs::read_to_string(flawed.join("micrograph_tags.csv")).unwrap();
    for row in tags.lines().skip(1) {
        assert!(
            row.ends_with("empty;thick-ice;crystalline-ice;drift"),
            "{tags}"
        );
    }
    let o = cryoprune(&["simulate", "--out", s(&flawed), "--defects", "fog=0.5"]);
    assert!(
        !o.status.success() && text(&o).contains("unknown defect `fog`"),
        "{}",
        text(&o)
    );
    let o = cryoprune(&["simulate", "--out", s(&flawed), "--ice-structure", "1.5"]);
    assert!(
        !o.status.success() && text(&o).contains("--ice-structure is a share of the noise"),
        "{}",
        text(&o)
    );

    // Picks in a per-micrograph format read back to the truth's coordinates.
    let out = run("d", "5", "box");
    let truth = std::fs::read_to_string(out.join("truth.csv")).unwrap();
    let n_truth = truth.lines().count() - 1;
    let set = cryoprune_formats::PickSet::read(&[out.join("picks")], None).unwrap();
    assert_eq!(set.len(), n_truth);
    let first = truth.lines().nth(1).unwrap();
    let f: Vec<&str> = first.split(',').collect();
    let (x, y): (f64, f64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
    assert!(set
        .iter()
        .any(|(m, p)| m == f[0] && (p.x - x).abs() < 0.6 && (p.y - y).abs() < 0.6));
    let mic = cryoprune_formats::MrcFile::open(out.join("micrographs/sim_0001.mrc")).unwrap();
    assert_eq!((mic.header().nx, mic.header().ny), (384, 384));
    assert_eq!(mic.header().pixel_size(), Some(2.5));
}

fn empiar_mic(d: &Path, stamp: &str) -> String {
    s(&d.join(format!(
        "empiar-10017/micrographs/Falcon_2012_06_12-{stamp}_0.jpg"
    )))
    .to_string()
}

/// Without --pretrained the small network starts from the backbone built into the binary:
/// written once into the cache, loaded, and named with its SHA-256 in model.json.
#[test]
fn train_starts_from_the_shipped_cryo_backbone_by_default() {
    let Some(d) = data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let model = dir.path().join("model");
    let labels = d.join("empiar-10017/labels/topaz.csv");
    let mic = empiar_mic(&d, "14_33_35");
    // Every run here caches into the test's own folder, never the user's.
    let train = |more: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cryoprune"))
            .env("CRYOPRUNE_CACHE", &cache)
            .args([
                "train",
                "--micrographs",
                &mic,
                "--labels",
                s(&labels),
                "--box",
                "180",
            ])
            .args(more)
            .output()
            .unwrap()
    };
    let quick = |out: &Path, more: &[&str]| {
        let args = [
            "--shots",
            "5",
            "--epochs",
            "1",
            "--val-max",
            "20",
            "--out",
            s(out),
        ];
        train(&[more, &args].concat())
    };
    let o = quick(&model, &[]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("starting weights: cryoprune's cryo-EM backbone cryo-small-64"),
        "{t}"
    );
    assert!(
        t.contains("loaded") && t.contains("pretrained tensors from"),
        "{t}"
    );
    // The hub's own test pins this constant to the shipped bytes and their record.
    let shipped = cryoprune_model::hub::CRYO_SMALL.sha256;
    let spec = model_json(&model);
    assert_eq!(spec["pretrained_sha256"], shipped, "{spec}");
    assert!(
        spec["pretrained"].as_str().unwrap().starts_with("cryo ("),
        "{spec}"
    );
    let copies: Vec<_> = std::fs::read_dir(cache.join("shipped")).unwrap().collect();
    assert_eq!(copies.len(), 1);

    // A model folder starts another model from its backbone (every tensor of it; the head is
    // learnt afresh), named by its weights' hash.
    let next = dir.path().join("next");
    let o = quick(&next, &["--pretrained", s(&model)]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let loaded = format!(
        "loaded 40 pretrained tensors from {}",
        model.join("weights.safetensors").display()
    );
    assert!(t.contains(&loaded), "{t}");
    assert_eq!(
        model_json(&next)["pretrained_sha256"],
        spec["weights_sha256"],
        "{spec}"
    );

    // A network without a shipped backbone says so and starts from ImageNet's weights; asked
    // for by name where no ImageNet weights exist either, it starts from scratch.
    let topaz = dir.path().join("topaz");
    let o = train(&[
        "--arch",
        "topaz-resnet16",
        "--input-size",
        "96",
        "--shots",
        "3",
        "--epochs",
        "1",
        "--val-max",
        "10",
        "--out",
        s(&topaz),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("no cryo-EM backbone ships for topaz-resnet16"),
        "{t}"
    );
    assert!(t.contains("starting weights: none"), "{t}");
}

/// With as many shots as labels nothing is held out: the model says it was not measured
/// rather than recording a validation macro-F1 of 0, and prune says why it cannot advise.
/// Cross-validated, every label is a validation pick. Holding a few out, train says how rough
/// their figures are.
#[test]
fn training_on_every_label_records_no_validation() {
    let Some(d) = data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let all = std::fs::read_to_string(d.join("empiar-10017/labels/topaz.csv")).unwrap();
    let mut lines = all.lines();
    let mut csv = format!("{}\n", lines.next().unwrap());
    for class in ["particle", "junk"] {
        for l in lines
            .clone()
            .filter(|l| l.contains("14_33_35") && l.contains(&format!(",{class},")))
            .take(3)
        {
            csv.push_str(l);
            csv.push('\n');
        }
    }
    let labels = dir.path().join("labels.csv");
    std::fs::write(&labels, csv).unwrap();
    let model = dir.path().join("model");
    let mic = empiar_mic(&d, "14_33_35");
    let train = |more: &[&str]| tiny_train(&mic, &labels, more);
    let o = train(&["--shots", "3", "--epochs", "2", "--out", s(&model)]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("none is held out"), "{t}");
    assert!(
        t.contains("class `junk` has 3 labels") && t.contains("class `particle` has 3 labels"),
        "{t}"
    );
    let spec = model_json(&model);
    assert_eq!(spec["training"]["validation_picks"], 0, "{spec}");
    assert!(spec["training"]["validation"].is_null(), "{spec}");
    assert_eq!(spec["training"]["best_epoch"], 2, "the last epoch is kept");

    // Prunes the labelled picks with `model` into `out`; its output text.
    let prune = |model: &Path, out: &Path| {
        let o = cryoprune(&[
            "prune",
            "--model",
            s(model),
            "--micrographs",
            &mic,
            "--picks",
            s(&labels),
            "--out",
            s(out),
        ]);
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        t
    };
    let t = prune(&model, &dir.path().join("pruned"));
    assert!(t.contains("has no validation picks"), "{t}");

    // Cross-validated, every label is scored once by a network that did not learn it, and the
    // model learns from all 6; no more folds than the rarest class has picks.
    let folded = dir.path().join("folded");
    let o = train(&["--epochs", "2", "--folds", "5", "--out", s(&folded)]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("6 labelled picks (3 junk, 3 particle) in 3 folds")
            && t.contains("scored by the network of the 3 that did not learn it"),
        "{t}"
    );
    let spec = model_json(&folded);
    assert_eq!(spec["training"]["folds"], 3, "{spec}");
    assert_eq!(spec["training"]["train_picks"], 6, "{spec}");
    assert_eq!(spec["training"]["validation_picks"], 6, "{spec}");
    assert_eq!(spec["training"]["best_epoch"], 2, "the last epoch is kept");
    assert!(
        spec["training"]["validation"]["macro_f1"].is_number(),
        "{spec}"
    );
    let scored = std::fs::read_to_string(folded.join("validation.csv")).unwrap();
    assert_eq!(
        scored.lines().count(),
        7,
        "a header and every label: {scored}"
    );

    // Split by --val-fraction, a fifth of 3 per class holds out 1 each: the figures are rough.
    let split = dir.path().join("split");
    let o = train(&["--epochs", "1", "--out", s(&split)]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("only 2 picks are held out (1 of the rarest class)") && t.contains("±0.28"),
        "{t}"
    );
    // One validation pick per class cannot correct the dataset's count (its standard error is
    // at least a third, if the model even tells them apart): prune decides at the training share.
    let pruned = dir.path().join("pruned_split");
    let t = prune(&split, &pruned);
    assert!(
        (t.contains("an estimate that rough") || t.contains("too poorly"))
            && t.contains("as in training"),
        "{t}"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pruned.join("prune_summary.json")).unwrap()).unwrap();
    assert!(summary["prior"].is_null(), "{summary}");
}

#[test]
fn train_then_evaluate_on_real_topaz_labels() {
    let Some(d) = data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    let labels = d.join("empiar-10017/labels/topaz.csv");
    let o = cryoprune(&[
        "train",
        "--arch",
        "small",
        "--pretrained",
        "none",
        "--micrographs",
        &empiar_mic(&d, "14_33_35"),
        "--labels",
        s(&labels),
        "--box",
        "180",
        "--input-size",
        "32",
        "--shots",
        "8",
        "--epochs",
        "3",
        "--val-max",
        "40",
        "--seed",
        "3",
        "--out",
        s(&model),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("device: cpu"), "{t}");
    assert!(
        t.contains("training on 16 picks (8 junk, 8 particle)"),
        "{t}"
    );
    assert!(t.contains("diagnosis:"), "{t}");
    for f in [
        "weights.safetensors",
        "model.json",
        "history.csv",
        "curves.png",
        "validation.csv",
    ] {
        assert!(model.join(f).is_file(), "{f} missing");
    }
    let spec = model_json(&model);
    assert_eq!(spec["classes"], serde_json::json!(["junk", "particle"]));
    assert_eq!(spec["preprocessing"]["box_size"], 180);
    assert_eq!(spec["preprocessing"]["input_size"], 32);
    assert_eq!(spec["network"]["arch"], "small");
    assert_eq!(spec["training"]["train_picks"], 16);
    // Topaz's scores are in the labels, so the model combines them with the image.
    assert_eq!(spec["pick_context"]["terms"][0]["fact"], "score", "{spec}");
    assert!(
        spec["pick_context"]["terms"][0]["sd"].as_f64().unwrap() > 0.0,
        "{spec}"
    );
    assert!(t.contains("pick context: the picker's score"), "{t}");
    let history = std::fs::read_to_string(model.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 4, "header and three epochs");
    // `info` tells what the folder learnt from and how it scored, as model.json records it.
    let o = cryoprune(&["info", "--json", s(&model)]);
    assert!(o.status.success(), "{}", text(&o));
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (&info["type"], &info["trained_on"], &info["box_size"]),
        (
            &serde_json::json!("cryoprune model"),
            &serde_json::json!("8 junk, 8 particle"),
            &serde_json::json!(180)
        )
    );
    let f1 = spec["training"]["validation"]["macro_f1"].as_f64().unwrap();
    let scored = format!("macro-F1 {f1:.3}, accuracy ");
    assert!(
        info["validation"].as_str().unwrap().starts_with(&scored),
        "{info}"
    );
    assert!(
        info["pick_context"]
            .as_str()
            .unwrap()
            .starts_with("the picker's score"),
        "{info}"
    );
    // 789 picks on this micrograph, less the 16 drawn, less those too close to the edge.
    let validation = std::fs::read_to_string(model.join("validation.csv")).unwrap();
    assert!(validation.starts_with("micrograph,x,y,label,predicted,p_junk,p_particle\n"));
    assert!(validation.lines().count() > 700);

    let json = dir.path().join("eval.json");
    let predictions = dir.path().join("pred.csv");
    let o = cryoprune(&[
        "evaluate",
        "--model",
        s(&model),
        "--micrographs",
        &empiar_mic(&d, "15_30_21"),
        "--labels",
        s(&labels),
        "--json",
        s(&json),
        "--predictions",
        s(&predictions),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("confusion (rows: truth, columns: predicted)"),
        "{t}"
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let confusion = report["confusion"].as_array().unwrap();
    let total: u64 = confusion
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, report["n"].as_u64().unwrap());
    assert!(
        total > 700 && total <= 738,
        "{total} of the 738 picks of 15_30_21"
    );
    // One row per scored pick; the wrong rows are the confusion matrix's off-diagonal.
    let rows = std::fs::read_to_string(&predictions).unwrap();
    let rows: Vec<Vec<&str>> = rows
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len() as u64, total);
    let wrong = rows.iter().filter(|r| r[3] != r[4]).count() as u64;
    assert_eq!(
        wrong,
        confusion[0][1].as_u64().unwrap() + confusion[1][0].as_u64().unwrap()
    );
    assert!(rows.iter().all(|r| {
        let p: f32 = r[5].parse::<f32>().unwrap() + r[6].parse::<f32>().unwrap();
        (p - 1.0).abs() < 1e-3
    }));

    // Both macro-F1s are printed; labels without scores need --image-only, which then
    // gives the image-alone figure.
    let both = t
        .lines()
        .find(|l| l.contains("on the image alone"))
        .unwrap_or_else(|| panic!("{t}"));
    let image_alone: String = both.split(": ").nth(1).unwrap().chars().take(5).collect();
    let bare = dir.path().join("bare.csv");
    let mut b = String::from("micrograph,x,y,label\n");
    for line in std::fs::read_to_string(&labels).unwrap().lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        b.push_str(&format!("{},{},{},{}\n", f[0], f[1], f[2], f[4]));
    }
    std::fs::write(&bare, b).unwrap();
    let mic = empiar_mic(&d, "15_30_21");
    let eval_bare = |more: &[&str]| {
        let mut a = vec![
            "evaluate",
            "--model",
            s(&model),
            "--micrographs",
            &mic,
            "--labels",
            s(&bare),
        ];
        a.extend(more);
        cryoprune(&a)
    };
    let o = eval_bare(&[]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("lacks the picker's score") && text(&o).contains("--image-only"),
        "{}",
        text(&o)
    );
    let o = eval_bare(&["--image-only"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("macro-F1 {image_alone}")),
        "{image_alone}: {}",
        text(&o)
    );

    // A damaged weights file is refused with the reason.
    std::fs::write(model.join("weights.safetensors"), b"not weights").unwrap();
    let o = cryoprune(&[
        "evaluate",
        "--model",
        s(&model),
        "--micrographs",
        &empiar_mic(&d, "15_30_21"),
        "--labels",
        s(&labels),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("SHA-256"), "{}", text(&o));
}

/// `train` from scratch on one micrograph's `labels`, 180-px boxes at 32 px: seconds a run.
fn tiny_train(mic: &str, labels: &Path, more: &[&str]) -> Output {
    let mut args = vec!["train", "--pretrained", "none", "--micrographs", mic];
    args.extend(["--labels", s(labels), "--box", "180", "--input-size", "32"]);
    args.extend_from_slice(more);
    cryoprune(&args)
}

/// The first 12 Topaz picks of each class on EMPIAR-10017's 14_33_35, as a labels CSV.
fn write_topaz_labels(d: &Path, labels: &Path) {
    let all = std::fs::read_to_string(d.join("empiar-10017/labels/topaz.csv")).unwrap();
    let mut chosen = String::from("micrograph,x,y,score,label\n");
    for class in ["junk", "particle"] {
        for f in all
            .lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f[0].ends_with("14_33_35_0") && f[4] == class)
            .take(12)
        {
            chosen.push_str(&format!("{},{},{},{},{}\n", f[0], f[1], f[2], f[3], f[4]));
        }
    }
    std::fs::write(labels, chosen).unwrap();
}

/// `train --unlabelled`: before the labels, the network learns to tell the unlabelled picks
/// from random places on the same micrographs; model.json records it, a seed repeats it bit
/// for bit, and picks on no given micrograph are an error, not a silent no-op.
#[test]
fn adapts_to_the_unlabelled_picks() {
    let Some(d) = data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels.csv");
    write_topaz_labels(&d, &labels);
    let picks = d.join("empiar-10017/picks/topaz");
    let mics = [empiar_mic(&d, "14_33_35"), empiar_mic(&d, "15_17_31")];
    let train = |micrographs: &[&str], unlabelled: &Path, out: &Path| {
        let mut a = vec!["train", "--pretrained", "none", "--micrographs"];
        a.extend(micrographs);
        a.extend([
            "--labels",
            s(&labels),
            "--box",
            "180",
            "--input-size",
            "32",
            "--epochs",
            "2",
            "--shots",
            "8",
            "--seed",
            "1",
            "--unlabelled",
            s(unlabelled),
            "--unlabelled-max",
            "600",
            "--unlabelled-epochs",
            "1",
            "--out",
            s(out),
        ]);
        cryoprune(&a)
    };
    let model = dir.path().join("model");
    let o = train(&[&mics[0], &mics[1]], &picks, &model);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("adapted to these micrographs in"), "{t}");
    let spec_a = model_json(&model);
    let record = &spec_a["training"]["adaptation"];
    // About 600 from whole micrographs: 14_33_35's 789 picks thinned to 600, then a tenth of
    // them and of as many random places held out to validate.
    let (picked, elsewhere) = (
        record["picked"].as_u64().unwrap(),
        record["elsewhere"].as_u64().unwrap(),
    );
    assert_eq!(picked, 540, "{record}");
    assert!((530..=540).contains(&elsewhere), "{record}");
    assert_eq!(record["epochs"], 1);
    let accuracy = record["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&accuracy), "{record}");
    assert_eq!(record["picks"][0].as_str().unwrap(), s(&picks));
    // The labels then train as usual.
    assert_eq!(spec_a["training"]["train_picks"], 16);

    let again = dir.path().join("again");
    assert!(train(&[&mics[0], &mics[1]], &picks, &again)
        .status
        .success());
    assert_eq!(
        model_json(&again)["weights_sha256"],
        spec_a["weights_sha256"]
    );

    // Picks of a micrograph not given cannot be cut: nothing to adapt on.
    let other = picks.join("Falcon_2012_06_12-15_17_31_0.box");
    let none = dir.path().join("none");
    let o = train(&[&mics[0]], &other, &none);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("nothing to adapt the network on"),
        "{}",
        text(&o)
    );
    assert!(!none.exists());
}

/// `train --pseudo-labels N`: after training, the N unlabelled picks of each class the model is
/// surest of become labels and the model trains again; model.json records how many, the
/// labelled picks themselves are not among them, and the option needs unlabelled picks and a
/// held-out validation.
#[test]
fn learns_its_surest_unlabelled_picks_as_labels() {
    let Some(d) = data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels.csv");
    write_topaz_labels(&d, &labels);
    let picks = d.join("empiar-10017/picks/topaz/Falcon_2012_06_12-14_33_35_0.box");
    let mic = empiar_mic(&d, "14_33_35");
    let train = |more: &[&str], out: &Path| {
        let mut a = vec!["--epochs", "2", "--seed", "1", "--out", s(out)];
        a.extend(more);
        tiny_train(&mic, &labels, &a)
    };
    // 8 labels a side train, the unlabelled picks are 14_33_35's.
    let with_pool = |more: &[&str], out: &Path| {
        let mut a = vec!["--shots", "8", "--unlabelled", s(&picks)];
        a.extend(more);
        train(&a, out)
    };
    let model = dir.path().join("model");
    let o = with_pool(
        &["--unlabelled-epochs", "0", "--pseudo-labels", "10"],
        &model,
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(!t.contains("adapted to these micrographs"), "{t}");
    // 14_33_35 has 789 Topaz picks, 24 of them labelled here.
    assert!(
        t.contains("pseudo-labels: of 765 unlabelled picks (24 more lie on labelled ones)"),
        "{t}"
    );
    let spec = model_json(&model);
    let per_class: Vec<u64> = spec["training"]["pseudo_labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    let taken: u64 = per_class.iter().sum();
    assert!(
        per_class.iter().all(|&n| n <= 10) && taken >= 10,
        "{per_class:?}"
    );
    assert_eq!(
        spec["training"]["train_picks"].as_u64().unwrap(),
        16 + taken
    );
    assert!(spec["training"]["adaptation"].is_null());

    // After an adaptation, pseudo-labels choose among the very picks it learnt from.
    let o = with_pool(
        &[
            "--unlabelled-epochs",
            "1",
            "--unlabelled-max",
            "300",
            "--pseudo-labels",
            "5",
        ],
        &dir.path().join("adapted"),
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let number_after = |what: &str| -> usize {
        let at = t.find(what).unwrap_or_else(|| panic!("{what}: {t}")) + what.len();
        t[at..].split(' ').next().unwrap().parse().unwrap()
    };
    let adapted = number_after("adapting the network to these micrographs: ");
    let free = number_after("pseudo-labels: of ");
    let beside = number_after("unlabelled picks (");
    assert!(adapted > 250 && adapted <= 300, "{t}");
    assert_eq!(free + beside, adapted, "{t}");

    for (more, says) in [
        (
            vec!["--pseudo-labels", "10"],
            "give them with --unlabelled PICKS",
        ),
        (
            vec![
                "--folds",
                "3",
                "--unlabelled",
                s(&picks),
                "--pseudo-labels",
                "10",
            ],
            "--pseudo-labels with --folds",
        ),
    ] {
        let out = dir.path().join("refused");
        let o = train(&more, &out);
        assert!(
            !o.status.success() && text(&o).contains(says),
            "{}",
            text(&o)
        );
        assert!(!out.exists());
    }
}

/// `extract` carries the labels into its particle STAR; `train` and `evaluate` then read the
/// labelled stack without micrographs, as a RELION user's selected particles would be read.
#[test]
fn trains_and_evaluates_from_a_labelled_particle_star() {
    let Some(d) = data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let stack = dir.path().join("Extract/particles.mrcs");
    std::fs::create_dir_all(stack.parent().unwrap()).unwrap();
    let labels = d.join("empiar-10017/labels/topaz.csv");
    let mic = PathBuf::from(empiar_mic(&d, "15_17_31"));
    let o = extract(&mic, &labels, &stack, &["--box", "180", "--size", "48"]);
    assert!(o.status.success(), "{}", text(&o));
    let star = stack.with_extension("star");
    let written = std::fs::read_to_string(&star).unwrap();
    assert!(written.contains("_rlnImageName") && written.contains("particle"));

    let model = dir.path().join("model");
    let train = |threads: &str, out: &Path| {
        cryoprune(&[
            "train",
            "--arch",
            "small",
            "--pretrained",
            "none",
            "--labels",
            s(&star),
            "--input-size",
            "24",
            "--shots",
            "8",
            "--epochs",
            "2",
            "--val-max",
            "30",
            "--threads",
            threads,
            "--out",
            s(out),
        ])
    };
    let o = train("2", &model);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("particle images in 2 classes"), "{t}");
    // The CPU training path sums in a fixed order: one thread trains the same weights.
    let single = dir.path().join("model-1-thread");
    let o = train("1", &single);
    assert!(o.status.success(), "{}", text(&o));
    let weights = |m: &Path| std::fs::read(m.join("weights.safetensors")).unwrap();
    assert!(
        weights(&model) == weights(&single),
        "two threads and one trained different weights"
    );
    assert!(
        t.contains("training on 16 picks (8 junk, 8 particle)"),
        "{t}"
    );
    let spec = model_json(&model);
    assert_eq!(spec["preprocessing"]["box_size"], 24);
    // The STAR carries Topaz's score as the figure of merit, and training uses it; particle
    // images carry no micrograph, so no distance from its edge.
    assert!(written.contains("_rlnAutopickFigureOfMerit"), "{written}");
    let terms = spec["pick_context"]["terms"].as_array().unwrap();
    assert_eq!(terms.len(), 1, "{spec}");
    assert_eq!(terms[0]["fact"], "score", "{spec}");

    let json = dir.path().join("eval.json");
    let o = cryoprune(&[
        "evaluate",
        "--model",
        s(&model),
        "--labels",
        s(&star),
        "--json",
        s(&json),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let images = written
        .lines()
        .filter(|l| l.contains("@") && !l.starts_with('_'))
        .count() as u64;
    assert_eq!(report["n"].as_u64().unwrap(), images);
}

/// A seconds-long `fewshot` on one micrograph: 2 draws of the given shots and variants, one
/// epoch at 24 px.
fn tiny_fewshot<'a>(
    mic: &'a str,
    labels: &'a Path,
    shots: &'a str,
    variants: &'a str,
    out: &'a Path,
) -> Vec<&'a str> {
    vec![
        "fewshot",
        "--micrographs",
        mic,
        "--labels",
        s(labels),
        "--box",
        "180",
        "--input-size",
        "24",
        "--shots",
        shots,
        "--trials",
        "2",
        "--epochs",
        "1",
        "--variants",
        variants,
        "--val-max",
        "10",
        "--out",
        s(out),
    ]
}

#[test]
fn fewshot_writes_the_table_and_resumes() {
    let Some(d) = data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fs");
    let labels = d.join("empiar-10017/labels/topaz.csv");
    let mic = empiar_mic(&d, "15_17_31");
    let mut args = tiny_fewshot(&mic, &labels, "4,6", "scratch,scratch-single-loss", &out);
    args.extend(["--archs", "small"]);
    let o = cryoprune(&args);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let table = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(
        table.contains("| small | scratch |") && table.contains("| small | scratch-single-loss |"),
        "{table}"
    );
    assert!(table.contains("(n=2)"), "{table}");
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["trials"].as_array().unwrap().len(), 8);
    // Picks on micrographs with Topaz's scores: each model is also scored with the context.
    assert!(
        table.contains("| + context | pick context alone | picker score alone |"),
        "{table}"
    );
    assert!(results["trials"].as_array().unwrap().iter().all(|t| {
        ["with_context", "context_alone", "picker_score_alone"]
            .iter()
            .all(|c| {
                let f = t[c]["macro_f1"].as_f64().unwrap();
                (0.0..=1.0).contains(&f)
            })
    }));
    // Nothing is redone on a rerun with the same settings.
    let o = cryoprune(&args);
    assert!(o.status.success());
    assert!(!text(&o).contains("trial 0:"), "{}", text(&o));
    let again: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(again["trials"], results["trials"]);
}

/// `-adapted` variants start every draw from the network adapted once to `--unlabelled`, and
/// without unlabelled picks they are refused before anything trains.
#[test]
fn fewshot_adapts_once_for_the_adapted_variants() {
    let Some(d) = data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let labels = d.join("empiar-10017/labels/topaz.csv");
    let picks = d.join("empiar-10017/picks/topaz/Falcon_2012_06_12-15_17_31_0.box");
    let mic = empiar_mic(&d, "15_17_31");
    let run = |out: &Path, unlabelled: &[&str]| {
        let mut a = tiny_fewshot(&mic, &labels, "4", "scratch,scratch-adapted", out);
        a.extend(unlabelled);
        cryoprune(&a)
    };
    let out = dir.path().join("fs");
    let o = run(
        &out,
        &["--unlabelled", s(&picks), "--unlabelled-epochs", "1"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let table = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(table.contains("| small | scratch-adapted |"), "{table}");
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["trials"].as_array().unwrap().len(), 4);

    let none = dir.path().join("none");
    let o = run(&none, &[]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("-adapted variants need --unlabelled"),
        "{}",
        text(&o)
    );
}

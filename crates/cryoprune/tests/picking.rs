//! The deep picker's commands from the command line: `evaluate-picks` on real pickers' picks of
//! EMPIAR-10017 against the manual ground truth (cross-checked with the shared labels, made
//! independently), and `picker train` → `pick` → `evaluate-picks` on simulated micrographs with
//! the guide's on/off knobs.

mod common;

use std::path::Path;

use common::{cryoprune, data, text};
use serde_json::{json, Value};

const PEERS: [&str; 4] = ["14_33_35", "15_17_31", "15_30_21", "15_33_42"];

fn truth_files(d: &Path) -> Vec<String> {
    PEERS
        .iter()
        .map(|m| {
            d.join(format!("empiar-10017/truth/Falcon_2012_06_12-{m}_0.star"))
                .display()
                .to_string()
        })
        .collect()
}

#[test]
fn evaluate_picks_agrees_with_the_independent_labels_of_real_pickers() {
    let Some(d) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for picker in ["crYOLO", "topaz"] {
        let json = tmp.path().join(format!("{picker}.json"));
        let plot = tmp.path().join(format!("{picker}.png"));
        let picks = d.join(format!("empiar-10017/picks/{picker}"));
        let mut args = vec![
            "evaluate-picks".to_string(),
            "--picks".into(),
            picks.display().to_string(),
            "--truth".into(),
        ];
        args.extend(truth_files(&d));
        args.extend(["--radius", "54", "--json"].map(String::from));
        args.push(json.display().to_string());
        args.push("--plot".into());
        args.push(plot.display().to_string());
        let out = cryoprune(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{}", text(&out));
        let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        // The shared labels call a pick a particle when a true centre lies within 54 px, not
        // one to one: the matching can only find as many, and finds nearly all of them.
        let labels =
            std::fs::read_to_string(d.join(format!("empiar-10017/labels/{picker}.csv"))).unwrap();
        let labelled: usize = labels
            .lines()
            .filter(|l| l.split(',').nth(4) == Some("particle"))
            .count();
        let (picks, found) = (
            report["total"]["picks"].as_u64().unwrap() as usize,
            report["total"]["true_positives"].as_u64().unwrap() as usize,
        );
        assert_eq!(
            picks,
            labels.lines().count() - 1,
            "{picker}: every pick scored"
        );
        assert!(
            found <= labelled && found as f64 >= 0.97 * labelled as f64,
            "{picker}: {found} matched, {labelled} labelled particle"
        );
        let ap = report["average_precision"].as_f64().unwrap();
        let best = report["best"]["f1"].as_f64().unwrap();
        assert!(ap > 0.5 && ap <= 1.0 && best >= report["total"]["f1"].as_f64().unwrap());
        assert!(std::fs::metadata(&plot).unwrap().len() > 1000);
    }
}

/// Three easy simulated micrographs of 384² with their picks as CSV, in `sim`.
fn simulate_easy(sim: &str) {
    let out = cryoprune(&[
        "simulate",
        "--out",
        sim,
        "--count",
        "3",
        "--size",
        "384",
        "--format",
        "csv",
        "--preset",
        "easy",
        "--no-previews",
        "--seed",
        "5",
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn picker_train_pick_and_evaluate_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |s: &str| tmp.path().join(s).display().to_string();
    let sim = p("sim");
    simulate_easy(&sim);
    let picks = format!("{sim}/picks.csv");
    let mics = format!("{sim}/micrographs/*.mrc");
    let picker_train = |args: &[&str]| {
        let common = [
            "picker",
            "train",
            "--micrographs",
            &mics,
            "--picks",
            &picks,
            "--box",
            "48",
        ];
        cryoprune(&[&common[..], args].concat())
    };
    let out = picker_train(&[
        "--epochs",
        "2",
        "--class-weights",
        "off",
        "--normalize",
        "off",
        "--validation",
        "1",
        "--out",
        &p("picker"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("picker saved to"), "{}", text(&out));
    let spec: Value =
        serde_json::from_slice(&std::fs::read(p("picker/picker.json")).unwrap()).unwrap();
    assert_eq!(spec["training"]["class_weights"], false);
    assert_eq!(spec["normalize"], "meanstd");
    // The default network starts from the shipped backbone and picks with one view.
    assert_eq!(
        (&spec["network"], &spec["views"]),
        (&json!("small"), &json!(1))
    );
    let start = spec["pretrained"].as_str().unwrap();
    assert!(
        start.starts_with("cryo") && start.contains("SHA-256"),
        "{start}"
    );
    // From the backbone, its first stage stays as pretrained.
    assert_eq!(spec["training"]["frozen_stages"], 1);
    // `info` describes the folder from picker.json, without loading the network.
    let o = cryoprune(&["info", "--json", &p("picker")]);
    assert!(o.status.success(), "{}", text(&o));
    let info: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (&info["type"], &info["network"], &info["threshold"]),
        (
            &json!("cryoprune picker"),
            &json!("small"),
            &spec["threshold"]
        )
    );
    let trained = spec["training"]["train_picks"].as_u64().unwrap();
    assert_eq!(
        info["trained_on"],
        format!("{trained} picks on 2 micrographs")
    );
    let (picker, boxes, stars) = (p("picker"), p("boxes/"), p("stars/"));
    let pick = |out: &str, more: &[&str]| {
        let args = [
            "pick",
            "--model",
            &picker,
            "--micrographs",
            &mics,
            "--out",
            out,
        ];
        cryoprune(&[&args[..], &["--threshold=-3"], more].concat())
    };
    let out = pick(&boxes, &["--format", "box"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_dir(p("boxes")).unwrap().count(), 3);
    // STAR coordinate files come with the index RELION 4/5's Extract takes, as AutoPick's do,
    // and the folder reads back through it.
    let out = pick(&stars, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let index = std::fs::read_to_string(p("stars/autopick.star")).unwrap();
    let listed: Vec<(&str, &str)> = index
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(m, _)| m.ends_with(".mrc"))
        .collect();
    assert_eq!(listed.len(), 3, "{index}");
    for (mic, file) in &listed {
        assert!(
            mic.starts_with(&sim) && Path::new(file.trim()).is_file(),
            "{index}"
        );
    }
    let boxes = cryoprune(&["info", "--json", &p("boxes")]);
    let stars = cryoprune(&["info", "--json", &p("stars")]);
    let count = |o: &std::process::Output| {
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["picks"].clone()
    };
    assert_eq!(count(&stars), count(&boxes), "{}", text(&stars));
    let v: Value = serde_json::from_slice(&stars.stdout).unwrap();
    assert_eq!(v["relion_index"], json!([p("stars/autopick.star")]), "{v}");
    let out = cryoprune(&[
        "evaluate-picks",
        "--picks",
        &p("boxes"),
        "--truth",
        &picks,
        "--radius",
        "16",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("average precision"), "{}", text(&out));
    // Positive-unlabelled training records the share of particles the picks hold.
    let out = picker_train(&[
        "--epochs",
        "1",
        "--loss",
        "pu",
        "--expected-particles",
        "200",
        "--network",
        "fcn",
        "--out",
        &p("pu"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let spec: Value = serde_json::from_slice(&std::fs::read(p("pu/picker.json")).unwrap()).unwrap();
    let loss = spec["training"]["loss"].as_str().unwrap();
    assert!(loss.starts_with("pu (picks hold 0."), "{loss}");
    // pick averages the views training chose its threshold on: 4 for fcn.
    assert_eq!(
        (&spec["network"], &spec["views"]),
        (&json!("picker-fcn-24"), &json!(4))
    );
    assert!(spec["pretrained"].as_str().unwrap().starts_with("none"));
    assert_eq!(spec["training"]["frozen_stages"], 0);
    // Knobs are checked in words.
    let out = picker_train(&["--loss", "pu", "--out", &p("x")]);
    assert!(!out.status.success() && text(&out).contains("--expected-particles"));
    let out = picker_train(&["--views", "9", "--out", &p("x")]);
    assert!(
        !out.status.success() && text(&out).contains("give 1 to 8"),
        "{}",
        text(&out)
    );
    let out = picker_train(&["--network", "fcn", "--pretrained", "cryo", "--out", &p("x")]);
    assert!(
        !out.status.success() && text(&out).contains("--network small"),
        "{}",
        text(&out)
    );
    let out = picker_train(&["--pretrained", "none", "--freeze", "1", "--out", &p("x")]);
    assert!(
        !out.status.success() && text(&out).contains("no learnt stages to keep"),
        "{}",
        text(&out)
    );
    let out = picker_train(&["--freeze", "5", "--out", &p("x")]);
    assert!(
        !out.status.success() && text(&out).contains("has 4 stages"),
        "{}",
        text(&out)
    );
    let out = picker_train(&["--network", "resnet", "--out", &p("x")]);
    assert!(
        !out.status.success() && text(&out).contains("expected fcn or small"),
        "{}",
        text(&out)
    );
    let out = picker_train(&["--class-weights", "maybe", "--out", &p("x")]);
    assert!(!out.status.success() && text(&out).contains("expected on or off"));
    let out = cryoprune(&[
        "evaluate-picks",
        "--picks",
        &picks,
        "--truth",
        &picks,
        "--radius",
        "0",
    ]);
    assert!(
        !out.status.success() && text(&out).contains("--radius 0"),
        "{}",
        text(&out)
    );
}

/// Picks of `picks` (x, y) with one of `other` within `radius`, as a share.
fn matched(picks: &[(f64, f64)], other: &[(f64, f64)], radius: f64) -> f64 {
    let near = |p: &(f64, f64)| other.iter().any(|q| (p.0 - q.0).hypot(p.1 - q.1) <= radius);
    picks.iter().filter(|p| near(p)).count() as f64 / picks.len().max(1) as f64
}

/// A picker applied to micrographs of another pixel size bins them to the scale it learnt: a
/// micrograph sampled twice as finely (its header saying half the pixel size) gives the picks
/// of the original at twice the coordinates, where picking it as the training micrographs were
/// picked finds other places; `--angpix` overrides the header, and a micrograph coarser than
/// the network's pixel is refused.
#[test]
fn pick_bins_micrographs_of_another_pixel_size_to_the_pickers_scale() {
    use cryoprune_formats::mrc::{write_mrc, Mode, WriteKind};
    let tmp = tempfile::tempdir().unwrap();
    let p = |s: &str| tmp.path().join(s).display().to_string();
    let sim = p("sim");
    simulate_easy(&sim);
    // The small fcn network, a few epochs: enough to find these easy particles.
    let train = |mics: &str, epochs: &str, out: &str| {
        let picks = format!("{sim}/picks.csv");
        let out = cryoprune(&[
            "picker",
            "train",
            "--micrographs",
            mics,
            "--picks",
            &picks,
            "--box",
            "48",
            "--network",
            "fcn",
            "--epochs",
            epochs,
            "--validation",
            "1",
            "--out",
            out,
        ]);
        assert!(out.status.success(), "{}", text(&out));
        text(&out)
    };
    train(&format!("{sim}/micrographs/*.mrc"), "3", &p("picker"));
    let spec: Value =
        serde_json::from_slice(&std::fs::read(p("picker/picker.json")).unwrap()).unwrap();
    let trained = spec["angpix"].as_f64().unwrap();
    let info = cryoprune(&["info", "--json", &p("picker")]);
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["angpix"], spec["angpix"]);
    let bin = spec["bin"].as_f64().unwrap();
    let original =
        cryoprune_formats::MrcFile::open(format!("{sim}/micrographs/sim_0003.mrc")).unwrap();
    assert_eq!(original.header().pixel_size(), Some(trained as f32));
    let (nx, ny) = (original.header().nx, original.header().ny);
    let data = original.read_all();
    // Each pixel as 2 x 2 pixels of half the size.
    let fine: Vec<f32> = (0..2 * ny)
        .flat_map(|y| (0..2 * nx).map(move |x| (x, y)))
        .map(|(x, y)| data[(y / 2) * nx + x / 2])
        .collect();
    let write = |name: &str, size: (usize, usize), values: &[f32], px: f64| {
        let path = p(name);
        write_mrc(
            &path,
            (size.0, size.1, 1),
            values,
            Mode::Float32,
            WriteKind::ImageOrStack,
            Some(px as f32),
        )
        .unwrap();
        path
    };
    let fine_mic = write("fine.mrc", (2 * nx, 2 * ny), &fine, trained / 2.0);
    let pick = |mic: &str, more: &[&str]| -> (Vec<(f64, f64)>, String) {
        let csv = p(&format!("picks_{}.csv", more.len()));
        let _ = std::fs::remove_file(&csv);
        let args = [
            "pick",
            "--model",
            &p("picker"),
            "--micrographs",
            mic,
            "--out",
            &csv,
        ];
        let out = cryoprune(&[&args[..], more].concat());
        assert!(out.status.success(), "{}", text(&out));
        let rows = std::fs::read_to_string(&csv).unwrap();
        let picks = rows
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[1].parse().unwrap(), f[2].parse().unwrap())
            })
            .collect();
        (picks, text(&out))
    };
    let (at_scale, _) = pick(&format!("{sim}/micrographs/sim_0003.mrc"), &[]);
    assert!(at_scale.len() > 10, "{} picks", at_scale.len());
    let (fine_picks, said) = pick(&fine_mic, &[]);
    assert!(
        said.contains(&format!("binned by {:.2} instead of {:.2}", 2.0 * bin, bin)),
        "{said}"
    );
    let halved: Vec<(f64, f64)> = fine_picks.iter().map(|(x, y)| (x / 2.0, y / 2.0)).collect();
    // Within a quarter of the particle's 32 px: the score map is coarser than a pixel, and its
    // grid falls a little differently on the two binnings.
    let both = |a: &[(f64, f64)], b: &[(f64, f64)]| matched(a, b, 8.0).min(matched(b, a, 8.0));
    let rescaled = both(&at_scale, &halved);
    assert!(
        rescaled >= 0.85,
        "{rescaled}: {} against {} picks",
        halved.len(),
        at_scale.len()
    );
    // Told that the fine micrograph has the training pixel size, it is picked unscaled.
    let angpix = trained.to_string();
    let (unscaled, said) = pick(&fine_mic, &["--angpix", &angpix]);
    assert!(!said.contains("binned by"), "{said}");
    let unscaled: Vec<(f64, f64)> = unscaled.iter().map(|(x, y)| (x / 2.0, y / 2.0)).collect();
    let unscaled_match = both(&at_scale, &unscaled);
    assert!(
        unscaled_match < rescaled - 0.2,
        "{unscaled_match} against {rescaled}"
    );
    // A micrograph whose pixels are coarser than the network's cannot be brought to its scale.
    let coarse = write("coarse.mrc", (nx, ny), &data, trained * bin * 1.5);
    let out = cryoprune(&[
        "pick",
        "--model",
        &p("picker"),
        "--micrographs",
        &coarse,
        "--out",
        &p("c.csv"),
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("coarse.mrc: its pixels"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("are coarser than those the picker's network sees"));
    // Training micrographs whose headers disagree leave the recorded pixel size a guess.
    std::fs::create_dir(p("mixed")).unwrap();
    for name in ["sim_0001.mrc", "sim_0002.mrc"] {
        std::fs::copy(
            format!("{sim}/micrographs/{name}"),
            p(&format!("mixed/{name}")),
        )
        .unwrap();
    }
    write("mixed/sim_0003.mrc", (nx, ny), &data, trained * 1.2);
    let said = train(&p("mixed/*.mrc"), "1", &p("mixed_picker"));
    let range = format!(
        "headers give pixel sizes from {trained:.3} to {:.3} Å",
        trained * 1.2
    );
    assert!(said.contains(&range), "{said}");
}

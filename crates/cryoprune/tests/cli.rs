//! End-to-end tests of the `cryoprune` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cryoprune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cryoprune"))
        .args(args)
        .output()
        .expect("run cryoprune")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn data() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!(
            "skipping: {} not found (shared test data is not beside this checkout)",
            p.display()
        );
        None
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn help_lists_subcommands_with_examples() {
    let o = cryoprune(&["--help"]);
    assert!(o.status.success());
    for sub in ["info", "convert", "demo"] {
        assert!(text(&o).contains(sub), "{sub} missing from --help");
        let h = cryoprune(&[sub, "--help"]);
        let t = text(&h);
        assert!(
            t.contains("Examples:") && t.matches(&format!("cryoprune {sub}")).count() >= 2,
            "{t}"
        );
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
    assert!(
        text(&o).contains("wrote 3052 picks on 4 micrographs"),
        "{}",
        text(&o)
    );
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
    let o = cryoprune(&["demo", "--out", s(&out)]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("demo complete"));
    for ext in ["star", "cs", "box", "cbox", "txt", "csv"] {
        assert!(out.join(format!("picks.{ext}")).exists(), "{ext}");
    }
}

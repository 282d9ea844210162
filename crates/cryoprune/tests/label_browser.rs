//! `cryoprune label` in a real headless Chromium (Debian's `chromium`, driven over the DevTools
//! protocol by `label_browser.py`): on simulated micrographs, 20 picks per class labelled by
//! keyboard in the gallery, one undone and labelled again; the page trains a (tiny) network in
//! the background and the gallery reorders by it; then the micrograph view (tiles, zoom) and the
//! clusters view (a group labelled by one key and undone). labels.csv must hold exactly the
//! gallery's labels. Screenshots go to the test's folder.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

mod common;
use common::{cryoprune, s, text};

const PER_CLASS: usize = 20;

fn browser_ready() -> bool {
    let ok = Command::new("chromium")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        && Command::new("python3")
            .args(["-c", "import websocket"])
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        let msg = "chromium and python3's websocket-client are not available";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{msg} (CI must install them: see .ci/run)"
        );
        eprintln!("skipping: {msg} (apt-get install chromium; pip install websocket-client)");
    }
    ok
}

#[test]
fn twenty_picks_per_class_are_labelled_by_keyboard_in_chromium() {
    if !browser_ready() {
        return;
    }
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("label_browser");
    let _ = std::fs::remove_dir_all(&dir);
    let sim = dir.join("sim");
    let o = cryoprune(&[
        "simulate",
        "--out",
        s(&sim),
        "--count",
        "3",
        "--size",
        "512",
        "--seed",
        "6",
        "--format",
        "csv",
        "--no-previews",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let labels = dir.join("labels.csv");
    let mut server = Command::new(env!("CARGO_BIN_EXE_cryoprune"))
        .args([
            "label",
            "--micrographs",
            s(&sim.join("micrographs/*.mrc")),
            "--picks",
            s(&sim.join("picks.csv")),
            "--out",
            s(&labels),
            "--train-after",
            "10",
        ])
        .args(common::TINY_NET)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    // Keep reading: the server prints its second line (and training results) later, and a
    // closed pipe would make that print fail and end the server before the browser connects.
    let drain = std::thread::spawn(move || lines.for_each(drop));
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in `{first}`"))
        .to_string();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/label_browser.py");
    let o = Command::new("python3")
        .args([s(&script), &url, &PER_CLASS.to_string(), s(&dir)])
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let _ = drain.join();
    assert!(o.status.success(), "{}", text(&o));
    let mut reader = csv::Reader::from_path(&labels).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2 * PER_CLASS);
    for class in ["particle", "junk"] {
        assert_eq!(rows.iter().filter(|r| &r[3] == class).count(), PER_CLASS);
    }
    for shot in ["gallery_start", "gallery", "micrograph", "clusters"] {
        let png = std::fs::read(dir.join(format!("{shot}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{shot}");
    }
}

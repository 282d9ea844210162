//! The labelling page's server over real HTTP on simulated micrographs: it refuses requests
//! without the run's token or naming another host, labels and undoes, keeps the labels file
//! whole after every change, and a new session continues from it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cryoprune_formats::PickFormat;
use cryoprune_jobs::label::{serve, LabelConfig, Session};
use cryoprune_jobs::simulate::{self, SimulateConfig};
use cryoprune_jobs::Silent;

/// Three small simulated micrographs and their picks, and a labelling config for them.
fn dataset(dir: &Path) -> LabelConfig {
    let sim = dir.join("sim");
    let cfg = SimulateConfig {
        out: sim.clone(),
        count: 3,
        size: 384,
        format: PickFormat::Csv,
        no_previews: true,
        seed: 4,
        ..SimulateConfig::default()
    };
    simulate::run(&cfg, &Silent).unwrap();
    LabelConfig {
        micrographs: vec![sim.join("micrographs/*.mrc").to_string_lossy().into_owned()],
        picks: vec![sim.join("picks.csv")],
        box_size: 48,
        out: dir.join("labels.csv"),
        ..LabelConfig::default()
    }
}

/// Serves `session` on a free port in the background; returns the port and the token.
fn start(session: Session) -> (u16, String) {
    let token = session.token.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || rt.block_on(serve(Arc::new(session), listener)));
    (port, token)
}

/// One HTTP/1.1 request by hand (the Host header is the point of some tests); returns the
/// status and the body.
fn request(port: u16, method: &str, path: &str, host: &str, body: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = unchunk(&body);
    }
    (status, body)
}

fn unchunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
}

fn get_json(port: u16, token: &str, path: &str) -> serde_json::Value {
    let sep = if path.contains('?') { '&' } else { '?' };
    let (status, body) = request(
        port,
        "GET",
        &format!("{path}{sep}token={token}"),
        &format!("127.0.0.1:{port}"),
        "",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn post(port: u16, token: &str, path: &str, body: &str) -> (u16, String) {
    let (status, b) = request(
        port,
        "POST",
        &format!("{path}?token={token}"),
        &format!("127.0.0.1:{port}"),
        body,
    );
    (status, String::from_utf8_lossy(&b).into_owned())
}

fn labels_file(path: &Path) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    // The simulated picks carry the picker's score, which train combines with the image.
    assert_eq!(
        r.headers().unwrap(),
        vec!["micrograph", "x", "y", "label", "score"]
    );
    r.records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect()
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn requests_without_the_token_or_from_another_host_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dataset(dir.path());
    let (port, token) = start(Session::open(&cfg, &Silent).unwrap());
    let ok_host = format!("127.0.0.1:{port}");
    let with = |t: &str| format!("/api/state?token={t}");
    for (path, host) in [
        ("/api/state".to_string(), ok_host.clone()),
        (with("0123"), ok_host.clone()),
        (with(&token[..31]), ok_host.clone()),
        (with(&token), format!("evil.example:{port}")),
        (with(&token), "127.0.0.1".to_string()),
        (format!("/?token={token}"), format!("attacker.test:{port}")),
    ] {
        let (status, body) = request(port, "GET", &path, &host, "");
        assert_eq!(
            status,
            403,
            "{path} as {host}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    for host in [ok_host, format!("localhost:{port}")] {
        assert_eq!(request(port, "GET", &with(&token), &host, "").0, 200);
    }
    let (status, page) = request(
        port,
        "GET",
        &format!("/?token={token}"),
        &format!("127.0.0.1:{port}"),
        "",
    );
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&page).contains("cryoprune label"));
    // Nothing was written: no request changed a label.
    assert!(!cfg.out.exists());
}

#[test]
fn labels_are_saved_after_every_change_undone_and_continued() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dataset(dir.path());
    // A label file from elsewhere: one row for a micrograph not given is kept as it is.
    std::fs::write(&cfg.out, "micrograph,x,y,label\nother_mic,10,20,junk\n").unwrap();
    let (port, token) = start(Session::open(&cfg, &Silent).unwrap());
    let state = get_json(port, &token, "/api/state");
    assert_eq!(state["classes"], serde_json::json!(["particle", "junk"]));
    assert_eq!(state["micrographs"].as_array().unwrap().len(), 3);
    let first = get_json(port, &token, "/api/gallery?count=6");
    let ids: Vec<u64> = first
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    // The first screen spans the micrographs.
    let mics: std::collections::BTreeSet<u64> = first
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["micrograph"].as_u64().unwrap())
        .collect();
    assert_eq!(mics.len(), 3);

    for (i, id) in ids.iter().take(4).enumerate() {
        let (status, counts) = post(
            port,
            &token,
            "/api/label",
            &format!("{{\"id\":{id},\"class\":{}}}", i % 2),
        );
        assert_eq!(status, 200, "{counts}");
        let rows = labels_file(&cfg.out);
        assert_eq!(rows.len(), i + 2, "{rows:?}");
        assert!(rows.iter().any(|r| r[0] == "other_mic"));
        // Written under a temporary name and renamed: nothing else is left in the folder.
        assert_eq!(
            files_in(dir.path()),
            [cfg.out.clone(), dir.path().join("sim")]
        );
    }
    assert_eq!(
        post(port, &token, "/api/label", "{\"id\":99999,\"class\":0}").0,
        400
    );
    assert_eq!(
        post(
            port,
            &token,
            "/api/label",
            &format!("{{\"id\":{},\"class\":7}}", ids[4])
        )
        .0,
        400
    );
    let (status, body) = post(port, &token, "/api/undo", "");
    assert_eq!(status, 200);
    let undone: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(undone["id"], ids[3]);
    assert_eq!(undone["counts"], serde_json::json!([2, 1]));
    assert_eq!(labels_file(&cfg.out).len(), 4);
    // The gallery leaves labelled picks out unless asked for them.
    let unlabelled = get_json(port, &token, "/api/gallery?count=1000");
    assert!(unlabelled
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["label"].is_null()));
    let all = get_json(port, &token, "/api/gallery?count=1000&all=true");
    assert_eq!(
        all.as_array().unwrap().len(),
        unlabelled.as_array().unwrap().len() + 3
    );

    // Images: the particle as training cuts it, the micrograph binned for display.
    let (status, png) = request(
        port,
        "GET",
        &format!("/api/particle/{}?token={token}", ids[0]),
        &format!("127.0.0.1:{port}"),
        "",
    );
    assert_eq!(status, 200);
    assert!(png.starts_with(b"\x89PNG"));
    let (status, png) = request(
        port,
        "GET",
        &format!("/api/micrograph/1?token={token}"),
        &format!("127.0.0.1:{port}"),
        "",
    );
    assert_eq!(status, 200);
    assert!(png.starts_with(b"\x89PNG"));
    let mic = get_json(port, &token, "/api/micrograph/0/picks");
    assert_eq!(mic["nx"], 384);
    let labelled = mic["picks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !p["label"].is_null())
        .count();
    assert!(labelled >= 1);

    // A new session on the same file continues where this one stopped.
    let again = Session::open(&cfg, &Silent).unwrap();
    assert_eq!(again.counts(), [2, 1]);
    again.set_label(ids[5] as usize, Some(1)).unwrap();
    let rows = labels_file(&cfg.out);
    assert_eq!(rows.len(), 5);
    assert_eq!(rows.iter().filter(|r| r[3] == "junk").count(), 3);
}

#[test]
fn a_model_orders_the_gallery_most_uncertain_first() {
    use cryoprune_jobs::labels::LabelsConfig;
    use cryoprune_jobs::recipe::{NetConfig, PrepConfig};
    use cryoprune_jobs::train::{self, TrainJobConfig};
    let dir = tempfile::tempdir().unwrap();
    let cfg = dataset(dir.path());
    let model = dir.path().join("model");
    let train = TrainJobConfig {
        labels: LabelsConfig {
            micrographs: cfg.micrographs.clone(),
            labels: vec![dir.path().join("sim/truth.csv")],
            ..LabelsConfig::default()
        },
        prep: PrepConfig {
            box_size: Some(48),
            input_size: 32,
            ..PrepConfig::default()
        },
        net: NetConfig {
            arch: cryoprune_model::Arch::Small,
            pretrained: "none".into(),
            epochs: 2,
            ..NetConfig::default()
        },
        image_only: true,
        out: model.clone(),
        ..TrainJobConfig::default()
    };
    train::run(&train, &Silent).unwrap();
    let session = Session::open(&cfg, &Silent).unwrap();
    assert_eq!(session.state().order, "micrographs in turn");
    let before = session.gallery(0, 10_000, true);
    assert!(before.iter().all(|p| p.predicted.is_none()));
    session.rank_with(&model).unwrap();
    assert!(session.state().order.starts_with("most uncertain first"));
    let after = session.gallery(0, 10_000, true);
    assert_eq!(after.len(), before.len());
    let margin = |p: &cryoprune_jobs::label::PickView| {
        // "class p": the top class's probability, which rises with the margin the order uses.
        let top: f64 = p
            .predicted
            .as_ref()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        top
    };
    // Within each micrograph the gallery goes from the least to the most confident pick, and
    // the first screen still spans every micrograph.
    for m in 0..3 {
        let shown: Vec<f64> = after
            .iter()
            .filter(|p| p.micrograph == m)
            .map(margin)
            .collect();
        let first = shown[..shown.len() / 4].iter().sum::<f64>() / (shown.len() / 4) as f64;
        let last = shown[shown.len() * 3 / 4..].iter().sum::<f64>()
            / (shown.len() - shown.len() * 3 / 4) as f64;
        assert!(first < last, "micrograph {m}: {first} then {last}");
    }
    let first_screen: std::collections::BTreeSet<usize> =
        after[..6].iter().map(|p| p.micrograph).collect();
    assert_eq!(first_screen.len(), 3);
}

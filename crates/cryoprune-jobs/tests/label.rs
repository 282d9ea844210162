//! The labelling page's server over real HTTP on simulated micrographs: it refuses requests
//! without the run's token or naming another host, labels and undoes, keeps the labels file
//! whole after every change, and a new session continues from it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cryoprune_formats::PickFormat;
use cryoprune_jobs::label::{serve, LabelConfig, Session};
use cryoprune_jobs::recipe::{NetConfig, PrepConfig};
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
        prep: PrepConfig {
            box_size: Some(48),
            ..PrepConfig::default()
        },
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

    // Images: the particle as training cuts it, the micrograph's tiles.
    let (status, png) = request(
        port,
        "GET",
        &format!("/api/particle/{}?token={token}", ids[0]),
        &format!("127.0.0.1:{port}"),
        "",
    );
    assert_eq!(status, 200);
    assert!(png.starts_with(b"\x89PNG"));
    let tile = |path: &str| {
        request(
            port,
            "GET",
            &format!("/api/micrograph/{path}token={token}"),
            &format!("127.0.0.1:{port}"),
            "",
        )
    };
    let (status, png) = tile("1/tile/0/0/0?");
    assert_eq!(status, 200);
    assert!(png.starts_with(b"\x89PNG"));
    // Made once, then read back from the session's folder beside the labels file.
    let cached = dir.path().join("labels_cryoprune/tiles");
    let made: Vec<PathBuf> = files_in(&cached.join(files_in(&cached)[0].file_name().unwrap()));
    assert_eq!(made.len(), 1, "{made:?}");
    let when = std::fs::metadata(&made[0]).unwrap().modified().unwrap();
    assert_eq!(tile("1/tile/0/0/0?"), (200, png.clone()));
    assert_eq!(
        std::fs::metadata(&made[0]).unwrap().modified().unwrap(),
        when
    );
    // A low-pass in Å (the simulated micrographs carry their pixel size) is another image.
    let (status, low) = tile("1/tile/0/0/0?lowpass=30&");
    assert_eq!(status, 200);
    assert!(low.starts_with(b"\x89PNG") && low != png);
    assert_eq!(files_in(&cached).len(), 2);
    assert_eq!(tile("1/tile/0/1/0?").0, 400, "a tile past the edge");
    assert_eq!(tile("1/tile/0/0/0?lowpass=-3&").0, 400);
    let mic = get_json(port, &token, "/api/micrograph/0/picks");
    assert_eq!(mic["nx"], 384);
    assert_eq!(mic["levels"][0]["factor"], 1.0);
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
    drop(again);

    // With fewer classes, the labels of the others are kept in the file and said not shown.
    let events = cryoprune_jobs::events::Collect::default();
    let fewer = LabelConfig {
        classes: vec!["particle".into()],
        ..cfg.clone()
    };
    let one = Session::open(&fewer, &events).unwrap();
    assert_eq!(one.counts(), [2]);
    assert!(events.events().iter().any(|e| matches!(e,
        cryoprune_jobs::Event::Warning(t) if t.starts_with("3 of them are not shown"))));
    drop(one);
    assert_eq!(labels_file(&cfg.out).len(), 5);
    // Refused when the session opens, before the page serves anything.
    for (bad, says) in [
        (
            LabelConfig {
                classes: vec!["particle".into(), "junk".into(), "particle".into()],
                ..cfg.clone()
            },
            "`particle` is named twice",
        ),
        (
            LabelConfig {
                out: cfg.out.parent().unwrap().to_path_buf(),
                ..cfg.clone()
            },
            "names a folder; give a file name",
        ),
        // The file is rewritten after every label: the picker's file would be lost.
        (
            LabelConfig {
                out: cfg.picks[0].clone(),
                ..cfg.clone()
            },
            "refusing to write over an input file",
        ),
        // A box in another unit stops the page instead of showing broken images.
        (
            LabelConfig {
                prep: PrepConfig {
                    box_size: Some(4000),
                    ..cfg.prep.clone()
                },
                ..cfg.clone()
            },
            "the box (4000 px) is larger than the micrograph",
        ),
    ] {
        let err = Session::open(&bad, &Silent).err().unwrap().to_string();
        assert!(err.contains(says), "{err}");
    }
}

/// A small model trained from scratch for `epochs` on the simulation's truth (all of it, or
/// `shots` picks per class), in `dir/model` (`dir/model_<shots>`).
fn truth_model(dir: &Path, cfg: &LabelConfig, epochs: usize, shots: Option<usize>) -> PathBuf {
    use cryoprune_jobs::labels::LabelsConfig;
    use cryoprune_jobs::train::{self, TrainJobConfig};
    let model = match shots {
        Some(n) => dir.join(format!("model_{n}")),
        None => dir.join("model"),
    };
    let train = TrainJobConfig {
        labels: LabelsConfig {
            micrographs: cfg.micrographs.clone(),
            labels: vec![dir.join("sim/truth.csv")],
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
            epochs,
            ..NetConfig::default()
        },
        image_only: true,
        shots,
        out: model.clone(),
        ..TrainJobConfig::default()
    };
    train::run(&train, &Silent).unwrap();
    model
}

#[test]
fn a_model_orders_the_gallery_most_uncertain_first() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dataset(dir.path());
    let model = truth_model(dir.path(), &cfg, 2, None);
    let session = Session::open(&cfg, &Silent).unwrap();
    assert_eq!(session.state().order, "micrographs in turn");
    let before = session.gallery(0, 10_000, true, None);
    assert!(before.iter().all(|p| p.predicted.is_none()));
    session.rank_with(&model).unwrap();
    let order = session.state().order;
    assert!(
        order.starts_with("most uncertain first, predicted classes and kinds in turn (margin"),
        "{order}"
    );
    let after = session.gallery(0, 10_000, true, None);
    assert_eq!(after.len(), before.len());
    // "class p": the class and its probability, which rises with the margin the order uses.
    let predicted = |p: &cryoprune_jobs::label::PickView| {
        let text = p.predicted.clone().unwrap();
        let (class, top) = text.rsplit_once(' ').unwrap();
        (class.to_string(), top.parse::<f64>().unwrap())
    };
    let shown: Vec<(String, f64)> = after.iter().map(predicted).collect();
    // The gallery goes from the least to the most confident picks...
    let quarter = shown.len() / 4;
    let mean = |s: &[(String, f64)]| s.iter().map(|p| p.1).sum::<f64>() / s.len() as f64;
    let (first, last) = (
        mean(&shown[..quarter]),
        mean(&shown[shown.len() - quarter..]),
    );
    assert!(first < last, "{first} then {last}");
    // ...with the predicted classes in turn while both last.
    let mut classes: Vec<&String> = shown.iter().map(|p| &p.0).collect();
    classes.sort();
    classes.dedup();
    if classes.len() == 2 {
        assert_ne!(shown[0].0, shown[1].0, "{:?}", &shown[..4]);
    }
}

/// A tiny network, so the page's background training takes seconds.
fn tiny(mut cfg: LabelConfig) -> LabelConfig {
    cfg.prep.input_size = 32;
    cfg.net = NetConfig {
        arch: cryoprune_model::Arch::Small,
        pretrained: "none".into(),
        epochs: 2,
        ..NetConfig::default()
    };
    cfg
}

/// The ids of every pick in the order the gallery shows them, the labelled ones too.
fn gallery_ids(session: &Session) -> Vec<usize> {
    session
        .gallery(0, usize::MAX, true, None)
        .iter()
        .map(|p| p.id)
        .collect()
}

/// The true class of each pick on the page, from the simulation's truth.
fn truth(dir: &Path, session: &Session) -> Vec<Option<usize>> {
    let names: Vec<String> = session
        .state()
        .micrographs
        .into_iter()
        .map(|m| m.0)
        .collect();
    let rows = labels_file(&dir.join("sim/truth.csv"));
    session
        .gallery(0, usize::MAX, true, None)
        .iter()
        .map(|p| {
            let row = rows.iter().find(|r| {
                r[0] == names[p.micrograph]
                    && (r[1].parse::<f64>().unwrap() - p.x).abs() < 0.5
                    && (r[2].parse::<f64>().unwrap() - p.y).abs() < 0.5
            })?;
            Some(usize::from(row[3] != "particle"))
        })
        .collect()
}

#[test]
fn the_page_trains_in_the_background_once_every_class_has_labels() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = tiny(dataset(dir.path()));
    cfg.train_after = 4;
    let session = Arc::new(Session::open(&cfg, &Silent).unwrap());
    let learner = session.clone();
    std::thread::spawn(move || learner.learn());
    let ids: Vec<usize> = gallery_ids(&session);
    let classes = truth(dir.path(), &session);
    let mut labelled = [0, 0];
    for &id in &ids {
        let Some(c) = classes[ids.iter().position(|&i| i == id).unwrap()] else {
            continue;
        };
        if labelled[c] < 6 {
            session.set_label(id, Some(c)).unwrap();
            labelled[c] += 1;
        }
        if labelled[0] == 3 && labelled[1] == 0 {
            // Waiting for the other class, nothing trains.
            std::thread::sleep(std::time::Duration::from_millis(200));
            let status = session.train_status();
            assert!(status.text.contains("4 more junk"), "{}", status.text);
        }
    }
    assert_eq!(labelled, [6, 6]);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while session.train_status().fits == 0 || session.train_status().running {
        assert!(
            std::time::Instant::now() < end,
            "{:?}",
            session.train_status()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let status = session.train_status();
    assert_eq!(status.trained_on, [6, 6], "{status:?}");
    // Six labels a side are too few to hold a fifth out: every label is scored by one of
    // the five folds' networks that did not learn it.
    assert!(
        status.macro_f1.is_some() && status.held_out == 12 && status.folds == Some(5),
        "{status:?}"
    );
    assert!(
        status.text.starts_with("trained on 12 labels")
            && status.text.contains("cross-validated in 5 folds"),
        "{}",
        status.text
    );
    let state = session.state();
    assert!(
        state.order.starts_with("most uncertain first"),
        "{}",
        state.order
    );
    assert_eq!(state.predicting, ["junk", "particle"]);
    // The filter shows only the picks predicted as the class asked for.
    let all = session.gallery(0, usize::MAX, true, None);
    let junk = session.gallery(0, usize::MAX, true, Some("junk"));
    let particle = session.gallery(0, usize::MAX, true, Some("particle"));
    assert_eq!(junk.len() + particle.len(), all.len());
    assert!(junk
        .iter()
        .all(|p| p.predicted.as_ref().unwrap().starts_with("junk ")));
    assert!(session.gallery(0, 10, true, Some("ice")).is_empty());

    // Saved beside the labels file, a model `prune` loads.
    let saved = session.save_model(None).unwrap();
    assert_eq!(saved, dir.path().join("labels_model"));
    let (_, spec) = cryoprune_train::modeldir::ModelDir::new(&saved)
        .load(&Default::default())
        .unwrap();
    assert_eq!(spec.classes, ["junk", "particle"]);
    assert_eq!(spec.preprocessing.box_size, 48);
    assert_eq!(spec.training.folds, Some(5));
    // Weighted as balanced: the labels' shares are how the user met the classes.
    let weights = spec.training.config.as_ref().unwrap().class_weights.clone();
    assert_eq!(
        weights,
        Some(vec![1.0, 1.0]),
        "6 labels a side weigh the same"
    );

    // With a model, the clusters are made of what the network sees.
    let view = session.cluster(3).unwrap();
    assert!(
        view.how.starts_with("by the network's features"),
        "{}",
        view.how
    );
}

#[test]
fn before_any_model_the_gallery_shows_a_typical_pick_of_each_kind_first() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dataset(dir.path());
    let session = Session::open(&cfg, &Silent).unwrap();
    let in_turn: Vec<usize> = gallery_ids(&session);
    let classes = truth(dir.path(), &session);
    let class_of = |id: usize| classes[in_turn.iter().position(|&i| i == id).unwrap()];
    session.rank_typical().unwrap();
    assert!(
        session
            .state()
            .order
            .starts_with("typical picks of each kind in turn"),
        "{}",
        session.state().order
    );
    let typical: Vec<usize> = gallery_ids(&session);
    let mut sorted = typical.clone();
    sorted.sort_unstable();
    let mut all = in_turn.clone();
    all.sort_unstable();
    assert_eq!(sorted, all, "every pick once");
    assert_ne!(typical, in_turn);
    // The first screen spans the kinds: particles and junk both, not the commonest kind alone.
    let first: Vec<usize> = typical[..10]
        .iter()
        .filter_map(|&id| class_of(id))
        .collect();
    assert!(first.contains(&0) && first.contains(&1), "{first:?}");
    // A model that learnt from fewer labels than there are kinds shows its predictions, and
    // the typical order holds until every kind could have a label.
    let young = truth_model(dir.path(), &cfg, 1, Some(4));
    session.rank_with(&young).unwrap();
    let order = session.state().order;
    assert!(
        order.starts_with("typical picks of each kind in turn")
            && order.contains("held until the model learns from")
            && order.contains("labels, one a kind; predictions by"),
        "{order}"
    );
    assert_eq!(gallery_ids(&session), typical);
    let shown = session.gallery(0, usize::MAX, true, None);
    assert!(shown.iter().all(|p| p.predicted.is_some()));
    session.rank_with(&young).unwrap();
    assert_eq!(session.state().order.matches("held until").count(), 1);
    // A model's order, once there is one, is not overwritten by a late grouping.
    let model = truth_model(dir.path(), &cfg, 1, None);
    session.rank_with(&model).unwrap();
    session.rank_typical().unwrap();
    assert!(
        session.state().order.starts_with("most uncertain first"),
        "{}",
        session.state().order
    );
}

#[test]
fn clusters_group_the_picks_and_one_key_labels_a_group() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dataset(dir.path());
    let session = Session::open(&cfg, &Silent).unwrap();
    assert!(session.clusters_view().is_err());
    assert!(session.cluster(1).is_err());
    let view = session.cluster(4).unwrap();
    assert!(
        view.how
            .contains("cryo-EM backbone's features (no model yet)"),
        "{}",
        view.how
    );
    let picks = session.state().picks;
    let sizes: Vec<usize> = view.groups.iter().map(|g| g.size).collect();
    assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
    assert!(sizes.iter().sum::<usize>() <= picks && sizes.iter().sum::<usize>() > picks * 9 / 10);
    let png = session.cluster_average(0).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    // The groups are not noise: on simulated data the junk and the particles gather apart.
    let classes = truth(dir.path(), &session);
    let ids: Vec<usize> = gallery_ids(&session);
    let class_of = |id: usize| classes[ids.iter().position(|&i| i == id).unwrap()];
    let purity: f64 = view
        .groups
        .iter()
        .map(|g| {
            let junk = g
                .members
                .iter()
                .filter(|&&id| class_of(id) == Some(1))
                .count();
            junk.max(g.size - junk) as f64
        })
        .sum::<f64>()
        / sizes.iter().sum::<usize>() as f64;
    let junk_share =
        classes.iter().filter(|c| **c == Some(1)).count() as f64 / classes.len() as f64;
    assert!(
        purity > junk_share.max(1.0 - junk_share) + 0.02,
        "purity {purity:.2} vs the larger class's share"
    );

    // One key labels the group's members; one undo takes it back.
    session
        .set_label(view.groups[0].members[0], Some(0))
        .unwrap();
    let n = session.label_group(0, 1).unwrap();
    assert_eq!(
        n,
        sizes[0] - 1,
        "the member labelled before keeps its label"
    );
    assert_eq!(session.counts(), [1, sizes[0] - 1]);
    assert_eq!(
        session.clusters_view().unwrap().groups[0].labelled,
        [1, sizes[0] - 1]
    );
    assert_eq!(labels_file(&cfg.out).len(), sizes[0]);
    session.undo().unwrap();
    assert_eq!(session.counts(), [1, 0]);
    assert!(session.label_group(99, 0).is_err());
}

//! The labelling job: a local web page to label picks by class, which writes the labels CSV
//! `train` reads after every change. This module holds the session (picks, labels, undo, the
//! gallery's order, particle images); `learn` trains and ranks in the background, `tiles` shows
//! micrographs, `clusters` groups the picks, and `server` serves it all on 127.0.0.1 only, behind
//! a per-run token.

mod clusters;
mod learn;
mod server;
mod tiles;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use cryoprune_formats::atomic::write_atomic;
use cryoprune_formats::{micrograph_shape, PickFormat, PickSet};
use cryoprune_image::display;
use cryoprune_image::pipeline::{Job, Pipeline};
use serde::{Deserialize, Serialize};

use crate::compute::ComputeConfig;
use crate::events::Events;
use crate::inputs::{micrograph_paths, pair_with_micrographs};
use crate::labels::LabelSource;
use crate::recipe::{NetConfig, PrepConfig};
use crate::{invalid, Error, Result};

pub use clusters::{ClustersView, GroupView, CLUSTER_PICKS};
use learn::Ranking;
pub use learn::{folds_for, page_net, TrainStatus, Uncertainty};
pub use server::serve;
pub use tiles::{Level, TileRequest, TILE};

/// Everything a labelling session needs; see `cryoprune label --help`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct LabelConfig {
    /// Micrographs the picks were made on (globs, quoted): MRC, TIFF, PNG or JPEG; or one list
    /// of them, a RELION micrographs STAR or cryoSPARC exposures .cs.
    #[arg(long, required = true, num_args = 1..)]
    pub micrographs: Vec<String>,
    /// Pick files or folders of them, in one format (STAR, .cs, .box, .cbox, Topaz .txt, CSV);
    /// a RELION picking job's folder (or its autopick.star) reads as its coordinate files.
    #[arg(long, required = true, num_args = 1..)]
    pub picks: Vec<PathBuf>,
    /// Pick format when the extension does not tell.
    #[arg(long)]
    pub format: Option<PickFormat>,
    #[command(flatten)]
    pub prep: PrepConfig,
    /// The labels CSV (micrograph,x,y,label); an existing one is read and continued.
    #[arg(long)]
    pub out: PathBuf,
    /// Classes, comma-separated, in key order.
    #[arg(long, value_delimiter = ',', default_values_t = LabelConfig::default().classes)]
    pub classes: Vec<String>,
    /// Port on 127.0.0.1 (default: a free one).
    #[arg(long, default_value_t = LabelConfig::default().port)]
    pub port: u16,
    /// A model from `train`: the gallery shows the picks it is least sure of first.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Labels of every class before the page trains a model in the background (0: never).
    #[arg(long, default_value_t = LabelConfig::default().train_after)]
    pub train_after: usize,
    /// How the gallery measures doubt: margin (top two classes) or entropy (all classes).
    #[arg(long, default_value_t = LabelConfig::default().uncertainty)]
    pub uncertainty: Uncertainty,
    /// Multiply pick coordinates by this factor (picks made on binned micrographs).
    #[arg(long, default_value_t = LabelConfig::default().scale)]
    pub scale: f64,
    #[command(flatten)]
    pub net: NetConfig,
    #[command(flatten)]
    pub compute: ComputeConfig,
}

impl Default for LabelConfig {
    fn default() -> Self {
        Self {
            micrographs: Vec::new(),
            picks: Vec::new(),
            format: None,
            prep: PrepConfig::default(),
            out: PathBuf::new(),
            classes: vec!["particle".into(), "junk".into()],
            port: 0,
            model: None,
            scale: 1.0,
            train_after: 5,
            net: NetConfig::default(),
            compute: ComputeConfig::default(),
            uncertainty: Uncertainty::default(),
        }
    }
}

/// Micrographs whose particle images are kept in memory.
const CACHED_MICROGRAPHS: usize = 16;

/// A pick that can be labelled: its group in the pick set, its place there, its micrograph.
#[derive(Debug, Clone, Copy)]
struct Item {
    group: usize,
    index: usize,
    mic: usize,
}

/// A micrograph with picks: its name as the pick files give it, its file, its picks' items.
struct Mic {
    name: String,
    path: PathBuf,
    items: Vec<usize>,
}

/// What changes while the page is open.
#[derive(Default)]
struct Labels {
    /// The class of each item, if labelled.
    of: Vec<Option<u8>>,
    /// Each change as (item, its class before) of every pick it touched, newest last: a
    /// group labelled at once is undone at once.
    history: Vec<Vec<(usize, Option<u8>)>>,
    /// Rows of a label file loaded at start that match no pick: written back as they were.
    foreign: Vec<[String; 4]>,
    /// Counts the changes, for the background training to wait on.
    version: u64,
}

impl Labels {
    fn of(of: Vec<Option<u8>>) -> Labels {
        Labels {
            of,
            ..Labels::default()
        }
    }
}

/// The PNGs of one micrograph's particles, in its picks' order.
type Thumbs = Arc<Vec<Vec<u8>>>;

/// A labelling session.
pub struct Session {
    cfg: LabelConfig,
    set: PickSet,
    mics: Vec<Mic>,
    items: Vec<Item>,
    /// The gallery's order: micrographs in turn, so the first screen already spans the dataset;
    /// then a typical pick of each kind in turn; once a model that learnt from a label per kind
    /// has scored the picks, most uncertain first.
    order: Mutex<Ranking>,
    labels: Mutex<Labels>,
    /// Signalled on every label change.
    changed: Condvar,
    status: Mutex<TrainStatus>,
    pipeline: Pipeline,
    /// PNGs of each cached micrograph's particles, oldest first.
    thumbs: Mutex<Vec<(usize, Thumbs)>>,
    /// Held while a micrograph's tiles are made: the page asks for several at once.
    tiling: Mutex<()>,
    clusters: Mutex<Option<clusters::Clustering>>,
    /// The secret every request must carry.
    pub token: String,
    /// The picks carry the picker's score, so the labels file does too.
    scores: bool,
}

/// One pick as the page sees it.
#[derive(Debug, Clone, Serialize)]
pub struct PickView {
    pub id: usize,
    pub micrograph: usize,
    pub x: f64,
    pub y: f64,
    pub label: Option<String>,
    /// The model's class and its probability ("particle 0.93"), once a model scored the picks.
    pub predicted: Option<String>,
}

impl Session {
    /// Reads the picks, pairs them with the micrographs and loads the labels `cfg.out` holds.
    pub fn open(cfg: &LabelConfig, events: &dyn Events) -> Result<Session> {
        let pre = cfg.prep.preprocessing(&LabelSource::Picks)?;
        if pre.box_size < 4 {
            invalid!(
                "--box {} is too small; give the box in micrograph pixels",
                pre.box_size
            );
        }
        if cfg.classes.is_empty() || cfg.classes.len() > 9 {
            invalid!("--classes: give 1 to 9 classes (keys 1-9 label them)");
        }
        if let Some(c) =
            (1..cfg.classes.len()).find(|&i| cfg.classes[..i].contains(&cfg.classes[i]))
        {
            invalid!("--classes: `{}` is named twice", cfg.classes[c]);
        }
        let set = crate::inputs::read_scaled(&cfg.picks, cfg.format, cfg.scale)?;
        let micrographs = micrograph_paths(&cfg.micrographs)?;
        // --out is read back when it exists (resuming), but it is rewritten after every
        // label, so it must not be the picker's file or a micrograph.
        crate::inputs::ensure_file_possible("--out", &cfg.out)?;
        let inputs: Vec<PathBuf> = cfg.picks.iter().chain(&micrographs).cloned().collect();
        cryoprune_formats::atomic::ensure_not_input(&cfg.out, &inputs)?;
        let report = pair_with_micrographs(&set, &micrographs, "they are not shown", events);
        let mut mics = Vec::new();
        let mut items = Vec::new();
        for &(g, m) in &report.pairs {
            if set.micrographs[g].picks.is_empty() {
                continue;
            }
            let mic = mics.len();
            let first = items.len();
            items.extend((0..set.micrographs[g].picks.len()).map(|index| Item {
                group: g,
                index,
                mic,
            }));
            mics.push(Mic {
                name: set.micrographs[g].micrograph.clone(),
                path: micrographs[m].clone(),
                items: (first..items.len()).collect(),
            });
        }
        if items.is_empty() {
            return Err(crate::inputs::no_match(&set, &micrographs));
        }
        // Checked on the first micrograph (a dataset's share one size), so that a box in
        // another unit stops here rather than showing as a gallery of broken images.
        let first = &mics[0].path;
        cryoprune_image::pipeline::check_box_fits(first, pre.box_size, micrograph_shape(first)?)?;
        let order = Ranking {
            how: "micrographs in turn".into(),
            order: in_turn(&mics),
            classes: Vec::new(),
            predicted: Vec::new(),
            typical_kinds: None,
            scored_by: None,
        };
        let pipeline = cryoprune_train::prep::pipeline(&pre, 1, 0);
        pipeline.extract.validate()?;
        let scores = set.iter().any(|(_, p)| p.score.is_some());
        let mut session = Session {
            cfg: cfg.clone(),
            set,
            labels: Mutex::new(Labels::of(vec![None; items.len()])),
            changed: Condvar::new(),
            status: Mutex::new(TrainStatus::default()),
            mics,
            items,
            order: Mutex::new(order),
            pipeline,
            thumbs: Mutex::new(Vec::new()),
            tiling: Mutex::new(()),
            clusters: Mutex::new(None),
            token: format!("{:032x}", rand::random::<u128>()),
            scores,
        };
        if cfg.out.exists() {
            let n = session.load(&cfg.out)?;
            events.note(format!("{n} labels read from {}", cfg.out.display()));
            let foreign = session
                .labels
                .get_mut()
                .expect("not shared yet")
                .foreign
                .len();
            if foreign > 0 {
                events.warn(format!(
                    "{foreign} of them are not shown (their class is not among --classes, or no \
                     pick given lies at their place); they stay in the file as they are"
                ));
            }
        }
        let short = session.short_of_labels();
        session.set_status(|s| s.text = short.unwrap_or_default());
        Ok(session)
    }

    fn pick(&self, id: usize) -> &cryoprune_formats::Pick {
        let it = self.items[id];
        &self.set.micrographs[it.group].picks[it.index]
    }

    fn view(&self, id: usize, labels: &Labels, ranking: &Ranking) -> PickView {
        let p = self.pick(id);
        PickView {
            id,
            micrograph: self.items[id].mic,
            x: p.x,
            y: p.y,
            label: labels.of[id].map(|c| self.cfg.classes[c as usize].clone()),
            predicted: ranking
                .predicted
                .get(id)
                .copied()
                .flatten()
                .map(|(c, p)| format!("{} {p:.2}", ranking.classes[c as usize])),
        }
    }

    /// The labels file's rows as the page leaves them: labelled picks, then foreign rows.
    /// With the picker's score last, which `train` combines with the image.
    fn rows(&self, labels: &Labels) -> Vec<[String; 5]> {
        let mut rows: Vec<[String; 5]> = (0..self.items.len())
            .filter_map(|id| {
                let c = labels.of[id]?;
                let p = self.pick(id);
                Some([
                    self.mics[self.items[id].mic].name.clone(),
                    p.x.to_string(),
                    p.y.to_string(),
                    self.cfg.classes[c as usize].clone(),
                    p.score.map_or(String::new(), |s| s.to_string()),
                ])
            })
            .collect();
        let foreign = labels
            .foreign
            .iter()
            .map(|[m, x, y, l]| [m.clone(), x.clone(), y.clone(), l.clone(), String::new()]);
        rows.extend(foreign);
        rows
    }

    /// Rewrites the labels file whole and wakes the background training.
    fn save(&self, labels: &mut Labels) -> Result<()> {
        labels.version += 1;
        self.changed.notify_all();
        self.write_labels(&self.cfg.out, labels)
    }

    /// Writes a labels file whole, under a temporary name renamed into place: a crash at any
    /// moment leaves the previous file or the new one.
    fn write_labels(&self, path: &Path, labels: &Labels) -> Result<()> {
        let rows = self.rows(labels);
        write_atomic(path, |w| {
            // The score column only when the picks have scores.
            let fields = if self.scores { 5 } else { 4 };
            let header = ["micrograph", "x", "y", "label", "score"];
            writeln!(w, "{}", header[..fields].join(","))?;
            let mut c = csv::Writer::from_writer(w);
            for r in &rows {
                c.write_record(&r[..fields])?;
            }
            c.flush()
        })?;
        Ok(())
    }

    /// Reads labels from a CSV of micrograph,x,y,label[,...]: each row labels the pick of that
    /// micrograph within half a pixel; others are kept as they are. Returns the rows read.
    fn load(&mut self, path: &Path) -> Result<usize> {
        let mut reader = csv::Reader::from_path(path)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        let by_name: HashMap<&str, usize> = self
            .mics
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.as_str(), i))
            .collect();
        let mut labels = std::mem::take(self.labels.get_mut().expect("not shared yet"));
        let mut n = 0;
        for (line, row) in reader.records().enumerate() {
            let row = row.map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
            let field = |i: usize| row.get(i).unwrap_or("").trim().to_string();
            let [mic, x, y, label] = [field(0), field(1), field(2), field(3)];
            let (Ok(px), Ok(py)) = (x.parse::<f64>(), y.parse::<f64>()) else {
                invalid!(
                    "{}, line {}: expected micrograph,x,y,label with numbers for x and y",
                    path.display(),
                    line + 2
                );
            };
            n += 1;
            let class = self.cfg.classes.iter().position(|c| *c == label);
            let found = by_name.get(mic.as_str()).and_then(|&m| {
                self.mics[m].items.iter().copied().find(|&id| {
                    let p = self.pick(id);
                    (p.x - px).abs() <= 0.5 && (p.y - py).abs() <= 0.5
                })
            });
            match (found, class) {
                (Some(id), Some(c)) => labels.of[id] = Some(c as u8),
                _ => labels.foreign.push([mic, x, y, label]),
            }
        }
        *self.labels.get_mut().expect("not shared yet") = labels;
        Ok(n)
    }

    /// Sets (or with `None` clears) the label of pick `id` and saves the file.
    pub fn set_label(&self, id: usize, class: Option<usize>) -> Result<()> {
        self.set_labels(&[id], class)
    }

    /// Sets the label of every pick in `ids` as one change, and saves the file.
    fn set_labels(&self, ids: &[usize], class: Option<usize>) -> Result<()> {
        if let Some(id) = ids.iter().find(|&&id| id >= self.items.len()) {
            invalid!("no pick {id}");
        }
        if class.is_some_and(|c| c >= self.cfg.classes.len()) {
            invalid!("no class {}", class.unwrap_or_default());
        }
        let mut labels = self.labels.lock().unwrap_or_else(|e| e.into_inner());
        let change = ids.iter().map(|&id| (id, labels.of[id])).collect();
        for &id in ids {
            labels.of[id] = class.map(|c| c as u8);
        }
        labels.history.push(change);
        self.save(&mut labels)
    }

    /// Undoes the newest change; returns the (first) pick it touched.
    pub fn undo(&self) -> Result<Option<usize>> {
        let mut labels = self.labels.lock().unwrap_or_else(|e| e.into_inner());
        let Some(change) = labels.history.pop() else {
            return Ok(None);
        };
        for &(id, before) in &change {
            labels.of[id] = before;
        }
        self.save(&mut labels)?;
        Ok(change.first().map(|c| c.0))
    }

    /// Labels per class, in class order.
    pub fn counts(&self) -> Vec<usize> {
        let labels = self.labels.lock().unwrap_or_else(|e| e.into_inner());
        class_counts(&labels.of, self.cfg.classes.len())
    }

    /// The gallery from position `from` of its order: `count` picks, only unlabelled ones
    /// unless `all`, only those the model predicts as class `predicted` when given.
    pub fn gallery(
        &self,
        from: usize,
        count: usize,
        all: bool,
        predicted: Option<&str>,
    ) -> Vec<PickView> {
        let labels = self.labels.lock().unwrap_or_else(|e| e.into_inner());
        let ranking = self.order.lock().unwrap_or_else(|e| e.into_inner());
        let wanted = predicted.map(|name| ranking.classes.iter().position(|c| c == name));
        let shown = |id: usize| match wanted {
            None => true,
            Some(class) => {
                let p = ranking.predicted.get(id).copied().flatten();
                class.is_some() && p.map(|(c, _)| c as usize) == class
            }
        };
        ranking
            .order
            .iter()
            .filter(|&&id| (all || labels.of[id].is_none()) && shown(id))
            .skip(from)
            .take(count)
            .map(|&id| self.view(id, &labels, &ranking))
            .collect()
    }

    fn job(&self, mic: &Mic) -> Job {
        Job {
            path: mic.path.clone(),
            picks: mic
                .items
                .iter()
                .map(|&id| (self.pick(id).x, self.pick(id).y))
                .collect(),
        }
    }

    /// The picks of micrograph `m` and its size.
    pub fn micrograph_picks(&self, m: usize) -> Result<MicrographView> {
        let Some(mic) = self.mics.get(m) else {
            invalid!("no micrograph {m}");
        };
        let (nx, ny) = micrograph_shape(&mic.path)?;
        let labels = self.labels.lock().unwrap_or_else(|e| e.into_inner());
        let ranking = self.order.lock().unwrap_or_else(|e| e.into_inner());
        Ok(MicrographView {
            name: mic.name.clone(),
            nx,
            ny,
            levels: tiles::levels(nx, ny),
            tile: TILE,
            picks: mic
                .items
                .iter()
                .map(|&id| self.view(id, &labels, &ranking))
                .collect(),
        })
    }

    /// Pick `id`'s particle image as PNG: cut, resampled and normalised as training cuts it.
    pub fn particle_png(&self, id: usize) -> Result<Vec<u8>> {
        let Some(item) = self.items.get(id) else {
            invalid!("no pick {id}");
        };
        let mic = item.mic;
        let cached = {
            let thumbs = self.thumbs.lock().unwrap_or_else(|e| e.into_inner());
            thumbs
                .iter()
                .find(|(m, _)| *m == mic)
                .map(|(_, t)| t.clone())
        };
        let thumbs = match cached {
            Some(t) => t,
            None => {
                let t = Arc::new(self.cut(mic)?);
                let mut all = self.thumbs.lock().unwrap_or_else(|e| e.into_inner());
                if all.len() >= CACHED_MICROGRAPHS {
                    all.remove(0);
                }
                all.push((mic, t.clone()));
                t
            }
        };
        // A micrograph's items are its group's picks in order.
        Ok(thumbs[item.index].clone())
    }

    /// Every particle image of micrograph `m`, as PNG (empty for a pick off the micrograph).
    fn cut(&self, m: usize) -> Result<Vec<Vec<u8>>> {
        let mic = &self.mics[m];
        let job = self.job(mic);
        let mut pngs = vec![Vec::new(); mic.items.len()];
        let side = self.pipeline.extract.out_size;
        let s2 = side * side;
        self.pipeline.run(&[job], |out| -> Result<()> {
            for (k, &i) in out.particles.kept.iter().enumerate() {
                pngs[i] = display::grey_png(&out.particles.data[k * s2..(k + 1) * s2], side)?;
            }
            Ok(())
        })?;
        Ok(pngs)
    }

    fn box_size(&self) -> usize {
        self.pipeline.extract.box_size
    }

    pub fn state(&self) -> State {
        let ranking = self.order.lock().unwrap_or_else(|e| e.into_inner());
        State {
            classes: self.cfg.classes.clone(),
            counts: self.counts(),
            picks: self.items.len(),
            micrographs: self
                .mics
                .iter()
                .map(|m| (m.name.clone(), m.items.len()))
                .collect(),
            box_size: self.box_size(),
            out: self.cfg.out.clone(),
            predicting: ranking.classes.clone(),
            training: self.train_status(),
            order: ranking.words(),
        }
    }
}

/// The session as the page starts from.
#[derive(Debug, Clone, Serialize)]
pub struct State {
    pub classes: Vec<String>,
    pub counts: Vec<usize>,
    pub picks: usize,
    /// (name, picks) of each micrograph, in the page's numbering.
    pub micrographs: Vec<(String, usize)>,
    pub box_size: usize,
    pub out: PathBuf,
    /// How the gallery is ordered, in words.
    pub order: String,
    /// The classes of the model that ordered it (empty before one did): the gallery's filter.
    pub predicting: Vec<String>,
    pub training: TrainStatus,
}

/// A micrograph as the page draws it: its size, its pyramid of tiled levels, its picks.
#[derive(Debug, Clone, Serialize)]
pub struct MicrographView {
    pub name: String,
    pub nx: usize,
    pub ny: usize,
    /// Coarsest first; tiles of `tile` pixels of their level.
    pub levels: Vec<Level>,
    pub tile: usize,
    pub picks: Vec<PickView>,
}

/// How many of `of` carry each of `k` classes.
fn class_counts(of: &[Option<u8>], k: usize) -> Vec<usize> {
    let mut n = vec![0; k];
    for c in of.iter().flatten() {
        n[*c as usize] += 1;
    }
    n
}

/// Every micrograph's picks in turn, each micrograph's in file order.
fn in_turn(mics: &[Mic]) -> Vec<usize> {
    round_robin(&mics.iter().map(|m| m.items.clone()).collect::<Vec<_>>())
}

/// The items of every micrograph in turn: the 1st of each, then the 2nd of each, ...
fn round_robin(by_mic: &[Vec<usize>]) -> Vec<usize> {
    let longest = by_mic.iter().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|k| by_mic.iter().filter_map(move |m| m.get(k).copied()))
        .collect()
}

/// Opens the session and serves the page until the process ends (Ctrl-C); the labels are on
/// disk after every change, so nothing is lost then.
pub fn run(cfg: &LabelConfig, events: &dyn Events) -> Result<()> {
    let session = Arc::new(Session::open(cfg, events)?);
    // The page is usable at once; the gallery reorders when the picks are grouped into kinds
    // or a model has scored them.
    let s = session.clone();
    let model = cfg.model.clone();
    std::thread::spawn(move || {
        let ordered = match model {
            Some(dir) => s.rank_with(&dir),
            None => s.rank_typical(),
        };
        if let Err(e) = ordered {
            tracing::warn!("the gallery keeps its order (micrographs in turn): {e}");
        }
        s.learn();
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Invalid(format!("cannot start the web server: {e}")))?;
    runtime.block_on(async {
        // 127.0.0.1 only: the page shows a user's data and writes their labels.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", cfg.port))
            .await
            .map_err(|e| Error::Invalid(format!("cannot listen on 127.0.0.1:{}: {e}", cfg.port)))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::Io(cfg.out.clone(), e))?
            .port();
        events.output(format!(
            "labelling {} picks on {}; open http://127.0.0.1:{port}/?token={}\n\
             labels are saved to {} after every change; Ctrl-C ends",
            session.items.len(),
            crate::count(session.mics.len(), "micrograph"),
            session.token,
            cfg.out.display()
        ));
        serve(session, listener).await
    })
}

//! One simulated micrograph: particles, junk, ice, CTF and noise, with the picks a real picker
//! would make and the truth behind each.

use cryoprune_image::fourier::{lowpass_in_place, LowPass};
use cryoprune_image::Image;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal, Poisson};

use crate::ctf::Ctf;
use crate::project::{project_at, random_rotation};
use crate::volume::Volume;

/// What a pick really is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Label {
    Particle,
    Carbon,
    Ice,
    Aggregate,
    Empty,
}

impl Label {
    pub const ALL: [Label; 5] = [
        Label::Particle,
        Label::Carbon,
        Label::Ice,
        Label::Aggregate,
        Label::Empty,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Label::Particle => "particle",
            Label::Carbon => "carbon",
            Label::Ice => "ice",
            Label::Aggregate => "aggregate",
            Label::Empty => "empty",
        }
    }
}

/// A pick with its truth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TruthPick {
    pub x: f64,
    pub y: f64,
    pub label: Label,
    /// A picker-like confidence in 0..1: higher for particles on average, but overlapping junk.
    pub score: f64,
}

/// How a picker behaves: which true particles it finds and which junk it also picks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PickerModel {
    /// Fraction of isolated true particles not picked.
    pub miss_rate: f64,
    /// Standard deviation of the pick position around the true centre, pixels.
    pub jitter: f64,
    /// Mean number of false picks per micrograph on carbon (when there is carbon), on its edge,
    /// on ice contamination (per blob), and in empty ice.
    pub carbon: f64,
    pub carbon_edge: f64,
    pub ice_per_blob: f64,
    pub empty: f64,
    /// Probability that an aggregate is picked.
    pub aggregate: f64,
    /// Separation of the scores of particles from junk (logit units; the spread is 1).
    pub score_separation: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SceneConfig {
    pub nx: usize,
    pub ny: usize,
    /// Å per pixel.
    pub pixel: f64,
    /// Fraction of the free area covered by particles.
    pub particle_density: f64,
    /// Signal-to-noise ratio: variance of the CTF-filtered particles (over the particles' discs)
    /// over the variance of the noise.
    pub snr: f64,
    pub voltage: f64,
    pub cs: f64,
    pub amplitude_contrast: f64,
    /// Defocus range, Å.
    pub defocus: (f64, f64),
    /// Largest astigmatism (difference of the two defoci), Å.
    pub astigmatism: f64,
    pub b_factor: f64,
    /// Relative variation of the ice thickness across the micrograph.
    pub ice_variation: f64,
    /// Share of the noise variance that is the ice's own scattering rather than shot noise.
    /// Amorphous ice is a phase object with no structure at the particles' scale, so it images
    /// as white noise through the CTF: the Thon rings a CTF estimator fits on empty ice. Being
    /// part of the specimen, it is smeared by drift and blurred further in thick ice, so those
    /// flaws show on micrographs without particles too. 0 leaves the noise white.
    pub ice_structure: f64,
    /// Probability that a micrograph has carbon film.
    pub carbon_probability: f64,
    /// Mean number of ice contamination blobs and of aggregates per micrograph.
    pub ice_blobs: f64,
    pub aggregates: f64,
    pub picker: PickerModel,
    /// How often a micrograph has each flaw that makes it one to reject.
    pub defects: Defects,
}

/// Probabilities, per micrograph, of flaws a curation step rejects micrographs for. They are
/// drawn from a generator of their own, so with all of them 0 a micrograph is the same as
/// without them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Defects {
    /// No particles at all (the junk stays).
    pub empty: f64,
    /// Ice thick enough to take most of the contrast: particles at a third of their signal
    /// under half again as much noise, and the ice's own rings (with
    /// [`SceneConfig::ice_structure`]) damped at high resolution.
    pub thick_ice: f64,
    /// Crystalline (hexagonal) ice: a lattice at 3.9 Å spacing (coarser where the pixel cannot
    /// show it), six sharp spots in the power spectrum.
    pub crystalline_ice: f64,
    /// Stage drift during the exposure: the image smeared 6-20 px along one direction (the
    /// noise, added per frame, is not), so Thon rings fade across that direction.
    pub drift: f64,
}

/// What a whole micrograph shows: the tags a curation step decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MicrographTags {
    pub carbon: bool,
    pub ice: bool,
    pub aggregate: bool,
    pub empty: bool,
    pub thick_ice: bool,
    pub crystalline_ice: bool,
    pub drift: bool,
}

impl MicrographTags {
    /// Every tag's name, in the order [`MicrographTags::names`] lists them.
    pub const ALL: [&'static str; 7] = [
        "carbon",
        "ice",
        "aggregate",
        "empty",
        "thick-ice",
        "crystalline-ice",
        "drift",
    ];

    /// The tags this micrograph carries.
    pub fn names(&self) -> Vec<&'static str> {
        [
            self.carbon,
            self.ice,
            self.aggregate,
            self.empty,
            self.thick_ice,
            self.crystalline_ice,
            self.drift,
        ]
        .into_iter()
        .zip(Self::ALL)
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// A simulated micrograph with its truth.
#[derive(Debug, Clone)]
pub struct Scene {
    pub image: Image,
    pub picks: Vec<TruthPick>,
    /// Centres of every particle placed (isolated ones; aggregates are listed among picks).
    pub particles: Vec<(f64, f64)>,
    pub ctf: Ctf,
    /// The noise standard deviation used, and the measured signal variance it was set from.
    pub noise_std: f64,
    pub signal_var: f64,
    pub tags: MicrographTags,
}

/// Parts of the scene before imaging, kept apart so the SNR can be set from the particles alone.
struct Potential {
    particles: Image,
    rest: Image,
    discs: Vec<(f64, f64, f64)>,
}

pub fn simulate(cfg: &SceneConfig, vol: &Volume, seed: u64) -> Scene {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut flaws = StdRng::seed_from_u64(seed ^ 0xDEF3_C75E_ED00_0001);
    let mut flaw = |p: f64| flaws.random::<f64>() < p;
    let d = cfg.defects;
    let mut tags = MicrographTags {
        empty: flaw(d.empty),
        thick_ice: flaw(d.thick_ice),
        crystalline_ice: flaw(d.crystalline_ice),
        drift: flaw(d.drift),
        ..MicrographTags::default()
    };
    let (nx, ny) = (cfg.nx, cfg.ny);
    let vol_radius = vol.radius();
    let radius = vol_radius * vol.voxel / cfg.pixel;
    let mut pot = Potential {
        particles: Image::zeros(nx, ny),
        rest: Image::zeros(nx, ny),
        discs: Vec::new(),
    };
    // A particle's projected potential peaks at about its thickness in voxels × density; junk
    // amplitudes are set relative to it so contrast is right whatever map is used.
    let sample = project_at(vol, &random_rotation(&mut rng), cfg.pixel, vol_radius);
    let peak = sample.data.iter().cloned().fold(0.0f32, f32::max).max(1e-6) as f64;

    let mut blocked = vec![false; nx * ny];
    let mut picks = Vec::new();

    // Carbon film: a region beyond a straight or gently curved edge.
    let carbon =
        (rng.random::<f64>() < cfg.carbon_probability).then(|| Carbon::random(&mut rng, nx, ny));
    tags.carbon = carbon.is_some();
    if let Some(c) = &carbon {
        let texture = smooth_noise(&mut rng, nx, ny, 0.5);
        for y in 0..ny {
            for x in 0..nx {
                if c.inside(x as f64, y as f64) {
                    let i = y * nx + x;
                    pot.rest.data[i] += (0.8 * peak * (1.0 + 0.15 * texture.data[i] as f64)) as f32;
                    blocked[i] = true;
                }
            }
        }
        let n = Poisson::new(cfg.picker.carbon.max(1e-9))
            .unwrap()
            .sample(&mut rng) as usize;
        for _ in 0..n {
            if let Some((x, y)) = c.random_where(&mut rng, (nx, ny), radius, |d| d < -2.0 * radius)
            {
                picks.push(pick_at(&mut rng, cfg, x, y, Label::Carbon, 0.4));
            }
        }
        let n = Poisson::new(cfg.picker.carbon_edge.max(1e-9))
            .unwrap()
            .sample(&mut rng) as usize;
        for _ in 0..n {
            if let Some((x, y)) =
                c.random_where(&mut rng, (nx, ny), radius, |d| d.abs() < 0.5 * radius)
            {
                // Pickers score edges high: strong gradient, particle-sized features.
                picks.push(pick_at(&mut rng, cfg, x, y, Label::Carbon, 0.9));
            }
        }
    }

    // Ice contamination: thick, irregular blobs.
    let n_ice = Poisson::new(cfg.ice_blobs.max(1e-9))
        .unwrap()
        .sample(&mut rng) as usize;
    tags.ice = n_ice > 0;
    for _ in 0..n_ice {
        let r = rng.random_range(1.5..5.0) * radius;
        let (cx, cy) = (
            rng.random_range(0.0..nx as f64),
            rng.random_range(0.0..ny as f64),
        );
        let harmonics: Vec<(f64, f64)> = (2..6)
            .map(|_| {
                (
                    rng.random_range(0.0..0.08),
                    rng.random_range(0.0..std::f64::consts::TAU),
                )
            })
            .collect();
        let edge = |theta: f64| {
            r * (1.0
                + harmonics
                    .iter()
                    .enumerate()
                    .map(|(k, (a, p))| a * ((k + 2) as f64 * theta + p).cos())
                    .sum::<f64>())
        };
        let reach = (r * 1.7) as i64;
        for y in (cy as i64 - reach).max(0)..(cy as i64 + reach).min(ny as i64) {
            for x in (cx as i64 - reach).max(0)..(cx as i64 + reach).min(nx as i64) {
                let (dx, dy) = (x as f64 - cx, y as f64 - cy);
                let d = dx.hypot(dy);
                let e = edge(dy.atan2(dx));
                if d < e {
                    let i = y as usize * nx + x as usize;
                    // Thick in the middle, falling off sharply at the rim.
                    let t = (1.0 - (d / e).powi(4)).sqrt();
                    pot.rest.data[i] += (6.0 * peak * t) as f32;
                    blocked[i] = true;
                }
            }
        }
        let n = Poisson::new(cfg.picker.ice_per_blob.max(1e-9))
            .unwrap()
            .sample(&mut rng) as usize;
        for _ in 0..n {
            // On the rim, where the Fresnel fringe looks like a particle edge.
            let theta = rng.random_range(0.0..std::f64::consts::TAU);
            let d = edge(theta) * rng.random_range(0.7..1.1);
            let (x, y) = (cx + d * theta.cos(), cy + d * theta.sin());
            if x >= 0.0 && y >= 0.0 && x < nx as f64 && y < ny as f64 {
                picks.push(pick_at(&mut rng, cfg, x, y, Label::Ice, 0.5));
            }
        }
    }

    // Aggregates: clumps of overlapping particles.
    let n_agg = Poisson::new(cfg.aggregates.max(1e-9))
        .unwrap()
        .sample(&mut rng) as usize;
    for _ in 0..n_agg {
        let Some((cx, cy)) = free_spot(&mut rng, &blocked, nx, ny, 2.5 * radius, 200) else {
            continue;
        };
        let members = rng.random_range(4..9);
        for _ in 0..members {
            let a = rng.random_range(0.0..std::f64::consts::TAU);
            let d = rng.random_range(0.0..1.3) * radius;
            let proj = project_at(vol, &random_rotation(&mut rng), cfg.pixel, vol_radius);
            add_at(
                &mut pot.particles,
                &proj,
                cx + d * a.cos(),
                cy + d * a.sin(),
            );
        }
        pot.discs.push((cx, cy, 2.3 * radius));
        tags.aggregate = true;
        block(&mut blocked, nx, ny, cx, cy, 2.5 * radius);
        if rng.random::<f64>() < cfg.picker.aggregate {
            picks.push(pick_at(&mut rng, cfg, cx, cy, Label::Aggregate, 1.1));
        }
    }

    // Isolated particles, packed to the requested density in the free area.
    let free = blocked.iter().filter(|b| !**b).count() as f64;
    let target = if tags.empty {
        0
    } else {
        (cfg.particle_density * free / (std::f64::consts::PI * radius * radius)) as usize
    };
    let mut particles = Vec::new();
    for _ in 0..target {
        let Some((x, y)) = free_spot(&mut rng, &blocked, nx, ny, 1.05 * radius, 60) else {
            break;
        };
        let proj = project_at(vol, &random_rotation(&mut rng), cfg.pixel, vol_radius);
        add_at(&mut pot.particles, &proj, x, y);
        block(&mut blocked, nx, ny, x, y, 2.0 * radius);
        pot.discs.push((x, y, radius));
        particles.push((x, y));
        if rng.random::<f64>() >= cfg.picker.miss_rate {
            let j = Normal::new(0.0, cfg.picker.jitter.max(1e-9)).unwrap();
            let (px, py) = (x + j.sample(&mut rng), y + j.sample(&mut rng));
            picks.push(pick_at(&mut rng, cfg, px, py, Label::Particle, 1.0));
        }
    }

    // Empty ice: false picks away from everything.
    let n = Poisson::new(cfg.picker.empty.max(1e-9))
        .unwrap()
        .sample(&mut rng) as usize;
    for _ in 0..n {
        if let Some((x, y)) = free_spot(&mut rng, &blocked, nx, ny, 0.8 * radius, 60) {
            picks.push(pick_at(&mut rng, cfg, x, y, Label::Empty, 0.2));
        }
    }

    // Ice thickness: a smooth field; thicker ice adds potential and noise.
    let thickness = smooth_noise(&mut rng, nx, ny, 0.004);
    for (v, t) in pot.rest.data.iter_mut().zip(&thickness.data) {
        *v += (cfg.ice_variation * peak * *t as f64) as f32;
    }

    let df = rng.random_range(cfg.defocus.0..=cfg.defocus.1.max(cfg.defocus.0));
    let astig = rng.random_range(0.0..=cfg.astigmatism.max(0.0));
    let ctf = Ctf {
        voltage: cfg.voltage,
        cs: cfg.cs,
        amplitude_contrast: cfg.amplitude_contrast,
        defocus_u: df + astig / 2.0,
        defocus_v: df - astig / 2.0,
        astigmatism_angle: rng.random_range(0.0..180.0),
        b_factor: cfg.b_factor,
    };
    let mut signal = ctf.apply(&pot.particles, cfg.pixel);
    let mut rest = ctf.apply(&pot.rest, cfg.pixel);
    let signal_var = disc_variance(&signal, &pot.discs);
    let mut noise_std = (signal_var / cfg.snr).sqrt();
    // An empty micrograph has no particle to set the noise from: the noise a particle of this
    // structure would have had.
    if tags.empty {
        noise_std = (disc_variance(
            &ctf.apply(&sample_on(&sample, nx, ny), cfg.pixel),
            &[((nx / 2) as f64, (ny / 2) as f64, radius)],
        ) / cfg.snr)
            .sqrt();
    }
    if tags.thick_ice {
        signal.data.iter_mut().for_each(|v| *v /= 3.0);
        noise_std *= 1.5;
    }
    if tags.crystalline_ice {
        add_lattice(&mut rest, &mut flaws, cfg.pixel, 0.6 * noise_std);
    }
    let share = cfg.ice_structure.clamp(0.0, 1.0);
    // Its own generator, so that without it every other draw, and the file, stay the same.
    let mut ice = (share > 0.0).then(|| {
        let mut ice_rng = StdRng::seed_from_u64(seed ^ 0x1CE5_7A7C_0000_0001);
        // Thicker ice scatters inelastically more, which damps its rings at high resolution.
        let damped = Ctf {
            b_factor: ctf.b_factor + if tags.thick_ice { 400.0 } else { 0.0 },
            ..ctf
        };
        let mut layer = damped.apply(&white_noise(&mut ice_rng, nx, ny), cfg.pixel);
        cryoprune_image::normalize::MicrographNorm::MeanStd.apply(&mut layer);
        let sd = (share.sqrt() * noise_std) as f32;
        layer.data.iter_mut().for_each(|v| *v *= sd);
        layer
    });
    let white_std = (1.0 - share).sqrt() * noise_std;
    if tags.drift {
        let length = flaws.random_range(6.0..20.0);
        let angle = flaws.random_range(0.0..std::f64::consts::PI);
        signal = smear(&signal, length, angle);
        rest = smear(&rest, length, angle);
        ice = ice.map(|layer| smear(&layer, length, angle));
    }
    let gauss = Normal::new(0.0f32, 1.0).unwrap();
    let mut image = Image::zeros(nx, ny);
    for i in 0..nx * ny {
        let local = (1.0 + 0.5 * cfg.ice_variation * thickness.data[i].max(-1.0) as f64).max(0.2);
        let ice_here = ice
            .as_ref()
            .map_or(0.0, |layer| layer.data[i] * local as f32);
        image.data[i] = signal.data[i]
            + rest.data[i]
            + ice_here
            + (white_std * local) as f32 * gauss.sample(&mut rng);
    }
    Scene {
        image,
        picks,
        particles,
        ctf,
        noise_std,
        signal_var,
        tags,
    }
}

/// `proj` alone at the centre of an `nx` × `ny` image.
fn sample_on(proj: &Image, nx: usize, ny: usize) -> Image {
    let mut img = Image::zeros(nx, ny);
    add_at(&mut img, proj, (nx / 2) as f64, (ny / 2) as f64);
    img
}

/// Hexagonal ice's lattice: three plane waves 120° apart at the (100) spacing of 3.9 Å, or at
/// 2.5 px where the pixel is too coarse to show that (so the spots stay inside the spectrum).
fn add_lattice(img: &mut Image, rng: &mut StdRng, pixel: f64, amplitude: f64) {
    let spacing = (3.9 / pixel).max(2.5);
    let k = std::f64::consts::TAU / spacing;
    let theta = rng.random_range(0.0..std::f64::consts::FRAC_PI_3);
    let waves: Vec<(f64, f64, f64)> = (0..3)
        .map(|i| {
            let a = theta + i as f64 * std::f64::consts::TAU / 3.0;
            (
                k * a.cos(),
                k * a.sin(),
                rng.random_range(0.0..std::f64::consts::TAU),
            )
        })
        .collect();
    for y in 0..img.ny {
        for x in 0..img.nx {
            let v: f64 = waves
                .iter()
                .map(|(kx, ky, phase)| (kx * x as f64 + ky * y as f64 + phase).cos())
                .sum();
            img.data[y * img.nx + x] += (amplitude * v / 3.0) as f32;
        }
    }
}

/// `img` averaged along a straight path `length` px long at `angle` (radians from x), centred:
/// the blur of a stage that drifts at a steady rate during the exposure.
fn smear(img: &Image, length: f64, angle: f64) -> Image {
    let steps = length.ceil() as usize + 1;
    let mut out = Image::zeros(img.nx, img.ny);
    let (nx, ny) = (img.nx as i64, img.ny as i64);
    for s in 0..steps {
        let t = s as f64 / (steps - 1) as f64 - 0.5;
        let (dx, dy) = (
            (t * length * angle.cos()).round() as i64,
            (t * length * angle.sin()).round() as i64,
        );
        for y in 0..ny {
            // Clamped at the edges: the micrograph's border repeats rather than darkening.
            let sy = (y + dy).clamp(0, ny - 1);
            for x in 0..nx {
                let sx = (x + dx).clamp(0, nx - 1);
                out.data[(y * nx + x) as usize] += img.data[(sy * nx + sx) as usize];
            }
        }
    }
    out.data.iter_mut().for_each(|v| *v /= steps as f32);
    out
}

/// A pick near (x, y) with a score drawn around `centre` (0..1 scale of the picker's liking):
/// particles and junk overlap by design, so the score alone cannot separate them.
fn pick_at(
    rng: &mut StdRng,
    cfg: &SceneConfig,
    x: f64,
    y: f64,
    label: Label,
    liking: f64,
) -> TruthPick {
    let logit =
        cfg.picker.score_separation * (liking - 0.5) + Normal::new(0.0, 1.0).unwrap().sample(rng);
    TruthPick {
        x,
        y,
        label,
        score: 1.0 / (1.0 + (-logit).exp()),
    }
}

fn add_at(img: &mut Image, proj: &Image, x: f64, y: f64) {
    let (cx, cy) = (x.round() as i64, y.round() as i64);
    let h = (proj.nx / 2) as i64;
    for v in 0..proj.ny as i64 {
        let my = cy - h + v;
        if my < 0 || my >= img.ny as i64 {
            continue;
        }
        for u in 0..proj.nx as i64 {
            let mx = cx - h + u;
            if mx >= 0 && mx < img.nx as i64 {
                let i = my as usize * img.nx + mx as usize;
                img.data[i] += proj.get(u as usize, v as usize);
            }
        }
    }
}

fn block(blocked: &mut [bool], nx: usize, ny: usize, x: f64, y: f64, r: f64) {
    let reach = r.ceil() as i64;
    for yy in (y as i64 - reach).max(0)..(y as i64 + reach + 1).min(ny as i64) {
        for xx in (x as i64 - reach).max(0)..(x as i64 + reach + 1).min(nx as i64) {
            if (xx as f64 - x).hypot(yy as f64 - y) <= r {
                blocked[yy as usize * nx + xx as usize] = true;
            }
        }
    }
}

/// A random point at least `margin` from the edges whose disc of radius `margin` is free.
fn free_spot(
    rng: &mut StdRng,
    blocked: &[bool],
    nx: usize,
    ny: usize,
    margin: f64,
    tries: usize,
) -> Option<(f64, f64)> {
    if 2.0 * margin >= nx.min(ny) as f64 {
        return None;
    }
    'outer: for _ in 0..tries {
        let x = rng.random_range(margin..nx as f64 - margin);
        let y = rng.random_range(margin..ny as f64 - margin);
        for (dx, dy) in [
            (0.0, 0.0),
            (margin, 0.0),
            (-margin, 0.0),
            (0.0, margin),
            (0.0, -margin),
            (0.7 * margin, 0.7 * margin),
            (-0.7 * margin, 0.7 * margin),
            (0.7 * margin, -0.7 * margin),
            (-0.7 * margin, -0.7 * margin),
        ] {
            let (px, py) = ((x + dx) as usize, (y + dy) as usize);
            if blocked[py.min(ny - 1) * nx + px.min(nx - 1)] {
                continue 'outer;
            }
        }
        return Some((x, y));
    }
    None
}

fn disc_variance(img: &Image, discs: &[(f64, f64, f64)]) -> f64 {
    let mut values = Vec::new();
    for &(x, y, r) in discs {
        let reach = r.ceil() as i64;
        for yy in (y as i64 - reach).max(0)..(y as i64 + reach + 1).min(img.ny as i64) {
            for xx in (x as i64 - reach).max(0)..(x as i64 + reach + 1).min(img.nx as i64) {
                if (xx as f64 - x).hypot(yy as f64 - y) <= r {
                    values.push(img.get(xx as usize, yy as usize));
                }
            }
        }
    }
    if values.is_empty() {
        return 1.0;
    }
    cryoprune_image::normalize::stats(&values)
        .std
        .powi(2)
        .max(1e-12)
}

/// Unit Gaussian white noise, drawn row by row from `rng`.
fn white_noise(rng: &mut StdRng, nx: usize, ny: usize) -> Image {
    let g = Normal::new(0.0f32, 1.0).unwrap();
    Image::new(nx, ny, (0..nx * ny).map(|_| g.sample(rng)).collect())
}

/// White noise low-pass filtered at `cutoff` (fraction of Nyquist) and scaled to unit variance:
/// texture for carbon, smooth fields for ice thickness.
pub fn smooth_noise(rng: &mut StdRng, nx: usize, ny: usize, cutoff: f64) -> Image {
    let mut img = white_noise(rng, nx, ny);
    lowpass_in_place(
        &mut img,
        &LowPass {
            cutoff,
            width: cutoff,
        },
    );
    cryoprune_image::normalize::MicrographNorm::MeanStd.apply(&mut img);
    img
}

/// Carbon film beyond an edge that is a straight line or an arc of a large circle.
struct Carbon {
    /// Circle centre and radius; a straight edge is a very large circle.
    cx: f64,
    cy: f64,
    r: f64,
}

impl Carbon {
    fn random(rng: &mut StdRng, nx: usize, ny: usize) -> Carbon {
        let (w, h) = (nx as f64, ny as f64);
        let size = w.max(h);
        // Radius from about the micrograph size (a visible curve) to 50x it (straight).
        let r = size
            * if rng.random::<bool>() {
                rng.random_range(0.8..2.0)
            } else {
                50.0
            };
        // The edge passes through a point in the middle third, the carbon on the far side.
        let (px, py) = (
            rng.random_range(w / 3.0..2.0 * w / 3.0),
            rng.random_range(h / 3.0..2.0 * h / 3.0),
        );
        let a = rng.random_range(0.0..std::f64::consts::TAU);
        Carbon {
            cx: px + r * a.cos(),
            cy: py + r * a.sin(),
            r,
        }
    }

    fn inside(&self, x: f64, y: f64) -> bool {
        (x - self.cx).hypot(y - self.cy) < self.r
    }

    /// A random point at least `margin` from the micrograph's edges whose signed distance to
    /// the carbon edge (negative inside) satisfies `accept`.
    fn random_where(
        &self,
        rng: &mut StdRng,
        (nx, ny): (usize, usize),
        margin: f64,
        accept: impl Fn(f64) -> bool,
    ) -> Option<(f64, f64)> {
        (0..200).find_map(|_| {
            let x = rng.random_range(margin..nx as f64 - margin);
            let y = rng.random_range(margin..ny as f64 - margin);
            accept((x - self.cx).hypot(y - self.cy) - self.r).then_some((x, y))
        })
    }
}

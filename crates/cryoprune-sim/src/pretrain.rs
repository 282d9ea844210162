//! The cryo-EM pretraining set: particles and junk cut from simulated micrographs that vary
//! where real data vary, labelled with what they are. Pretraining a backbone to tell these
//! classes apart gives it cryo-EM features (particle edges under CTF fringes, carbon, ice) that
//! a few labels can then steer, as the paper's cryo-EM image set did.
//!
//! Each micrograph of the set draws everything from its own seed: a structure of one of the
//! procedural families with random proportions, a particle size and a box-to-particle ratio,
//! pixel size, defocus, SNR (0.01 to 0.5, log-uniform), ice thickness, carbon with straight or
//! curved edges, ice contamination, aggregates, empty ice, off-centre picks, a raw or a
//! denoised (low-passed) look and either contrast. Particles are cut with the extractor and
//! settings `train` uses (robust micrograph normalisation, RELION background normalisation,
//! Fourier resampling to the input size, noise padding at the edge), so the backbone sees what
//! fine-tuning will show it. By default nothing comes from files; real maps and atomic models
//! given as [`Structure`]s join the families, each a class of its own, so the backbone also sees
//! the shapes of real proteins (keep out any structure you will evaluate on).

use std::f64::consts::{PI, TAU};
use std::path::Path;
use std::sync::Arc;

use cryoprune_image::extract::{
    EdgePolicy, ExtractConfig, Extractor, MicrographPrep, ParticleNorm,
};
use cryoprune_image::fourier::LowPass;
use cryoprune_image::normalize::MicrographNorm;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::scene::{simulate, Defects, Label, PickerModel, SceneConfig};
use crate::volume::{atoms_extent, bead_domain, read_atoms, render_atoms, Atom, Volume};
use crate::{Error, Result};

/// A real structure for the pretraining set: a map, projected at its own sampling, or an atomic
/// model, rendered at each micrograph's pixel size.
#[derive(Debug, Clone)]
pub struct Structure {
    /// The file's stem: its class is `particle:NAME`.
    pub name: String,
    density: Density,
}

#[derive(Debug, Clone)]
enum Density {
    Map(Volume),
    Atoms(Vec<Atom>),
}

impl Structure {
    /// Reads an MRC map (`.mrc`, `.map`) or an atomic model (`.pdb`, `.ent`, `.cif`).
    pub fn read(path: &Path) -> Result<Structure> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let density = match ext.as_str() {
            "mrc" | "map" => Density::Map(Volume::from_mrc(path)?),
            _ if crate::atoms::is_atomic_model(path) => Density::Atoms(read_atoms(path)?),
            _ => {
                return Err(Error::Input(format!(
                    "{}: expected a map (.mrc, .map) or an atomic model (.pdb, .ent, .cif)",
                    path.display()
                )))
            }
        };
        let name = path
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        Ok(Structure { name, density })
    }

    /// The density for a micrograph of `pixel` Å: maps keep their own sampling (projection
    /// resamples them), models are rendered at it.
    fn volume(&self, pixel: f64) -> Volume {
        match &self.density {
            Density::Map(v) => v.clone(),
            Density::Atoms(atoms) => render_atoms(atoms, pixel),
        }
    }

    /// Its extent in Å, as [`atoms_extent`] measures a model.
    fn extent(&self) -> f64 {
        match &self.density {
            Density::Map(v) => 2.0 * v.radius() * v.voxel + 10.0,
            Density::Atoms(atoms) => atoms_extent(atoms),
        }
    }
}

/// The structure families; each is a class of its own, so the backbone must learn shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// A few domains packed together.
    Globular,
    /// A curved rod of domains.
    Rod,
    /// An n-fold ring of subunits around a channel.
    Ring,
    /// Two stacked rings (a barrel, a proteasome-like side view).
    Barrel,
    /// Two globules side by side.
    Dimer,
    /// Four globules at the corners of a tetrahedron.
    Tetramer,
    /// Two rods at an angle.
    Bent,
    /// A large irregular cluster of many small domains (ribosome-like).
    Cluster,
}

impl Family {
    pub const ALL: [Family; 8] = [
        Family::Globular,
        Family::Rod,
        Family::Ring,
        Family::Barrel,
        Family::Dimer,
        Family::Tetramer,
        Family::Bent,
        Family::Cluster,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Globular => "globular",
            Family::Rod => "rod",
            Family::Ring => "ring",
            Family::Barrel => "barrel",
            Family::Dimer => "dimer",
            Family::Tetramer => "tetramer",
            Family::Bent => "bent",
            Family::Cluster => "cluster",
        }
    }

    /// Pseudo-atoms (Å) of one member of the family, its proportions drawn from `rng`.
    pub fn atoms(self, rng: &mut StdRng) -> Vec<Atom> {
        let mut atoms = Vec::new();
        let scale: f64 = rng.random_range(0.7..1.4);
        match self {
            Family::Globular => scattered(rng, 2..6, 12.0..18.0, scale * 18.0, scale, &mut atoms),
            Family::Rod => {
                let n = rng.random_range(5..9);
                let length = scale * rng.random_range(120.0..200.0);
                let bend = rng.random_range(0.0..40.0);
                for i in 0..n {
                    let t = i as f64 / (n - 1) as f64 - 0.5;
                    let c = [length * t, bend * (PI * t).cos() - bend / 2.0, 0.0];
                    let r = scale * 11.0;
                    bead_domain(rng, c, r, beads(r), &mut atoms);
                }
            }
            Family::Ring | Family::Barrel => {
                let n = rng.random_range(5..10);
                let radius = scale * rng.random_range(40.0..60.0);
                let layers: &[f64] = match self {
                    Family::Ring => &[0.0],
                    _ => &[-14.0, 14.0],
                };
                for &z in layers {
                    for i in 0..n {
                        let a = i as f64 * TAU / n as f64;
                        let r = scale * 12.0;
                        let c = [radius * a.cos(), radius * a.sin(), scale * z];
                        bead_domain(rng, c, r, beads(r), &mut atoms);
                    }
                }
            }
            Family::Dimer => {
                let r = scale * rng.random_range(16.0..22.0);
                for s in [-1.0, 1.0] {
                    bead_domain(rng, [s * 1.1 * r, 0.0, 0.0], r, beads(r), &mut atoms);
                }
            }
            Family::Tetramer => {
                let r = scale * rng.random_range(13.0..18.0);
                for c in [
                    [1.0, 1.0, 1.0],
                    [1.0, -1.0, -1.0],
                    [-1.0, 1.0, -1.0],
                    [-1.0, -1.0, 1.0],
                ] {
                    let d = 1.3 * r;
                    bead_domain(rng, [d * c[0], d * c[1], d * c[2]], r, beads(r), &mut atoms);
                }
            }
            Family::Bent => {
                let angle: f64 = rng.random_range(0.5..1.6);
                let arm = scale * rng.random_range(60.0..100.0);
                for (dx, dy) in [(1.0, 0.0), (angle.cos(), angle.sin())] {
                    for i in 0..4 {
                        let t = arm * (i as f64 + 0.5) / 4.0;
                        let r = scale * 11.0;
                        bead_domain(rng, [t * dx, t * dy, 0.0], r, beads(r), &mut atoms);
                    }
                }
            }
            Family::Cluster => scattered(rng, 12..24, 9.0..13.0, scale * 45.0, scale, &mut atoms),
        }
        atoms
    }
}

/// Bead count of a domain of radius `r` Å: it grows with volume (≈ 0.09 beads per Å³).
fn beads(r: f64) -> usize {
    (0.09 * r.powi(3)).round().max(20.0) as usize
}

/// Some domains (their count and radius drawn from the ranges, the radius times `scale`) at
/// random points within `spread` Å of the centre.
fn scattered(
    rng: &mut StdRng,
    count: std::ops::Range<usize>,
    radius: std::ops::Range<f64>,
    spread: f64,
    scale: f64,
    atoms: &mut Vec<Atom>,
) {
    let n = rng.random_range(count);
    for _ in 0..n {
        let r = scale * rng.random_range(radius.clone());
        let c = random_point(rng, spread);
        bead_domain(rng, c, r, beads(r), atoms);
    }
}

fn random_point(rng: &mut StdRng, radius: f64) -> [f64; 3] {
    loop {
        let p = [
            rng.random_range(-1.0..1.0),
            rng.random_range(-1.0..1.0),
            rng.random_range(-1.0..1.0),
        ];
        if p.iter().map(|v: &f64| v * v).sum::<f64>() <= 1.0 {
            return p.map(|v| v * radius);
        }
    }
}

/// The junk classes, after the particle kinds; the off-centre class comes last.
const JUNK: [Label; 4] = [Label::Carbon, Label::Ice, Label::Aggregate, Label::Empty];

/// Picks beside a particle rather than on it: real pickers make them, and a user labelling
/// picks calls them junk, since they extract as a particle pushed out of the box.
const OFF_CENTRE: &str = "off-centre";

/// How finely the set names its particles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Classes {
    /// One class per structure family and real structure, as the paper's particle kinds.
    #[default]
    Fine,
    /// Every centred particle one class: the task is "a centred particle, or which junk".
    Coarse,
}

impl Classes {
    pub fn name(self) -> &'static str {
        match self {
            Classes::Fine => "fine",
            Classes::Coarse => "coarse",
        }
    }
}

impl std::fmt::Display for Classes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Classes {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "fine" => Ok(Classes::Fine),
            "coarse" => Ok(Classes::Coarse),
            _ => Err(format!("unknown classes '{s}'; expected fine or coarse")),
        }
    }
}
/// Particle images and their class labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chunk {
    pub size: usize,
    /// `labels.len()` images of `size²` pixels.
    pub images: Vec<f32>,
    pub labels: Vec<usize>,
}

/// A deterministic, endless pretraining set: chunk `i` depends only on the seed, the
/// structures and `i`.
#[derive(Debug, Clone)]
pub struct PretrainSet {
    /// Side of the particle images (the network input).
    pub input_size: usize,
    pub seed: u64,
    /// Micrographs simulated per chunk.
    pub micrographs: usize,
    /// Real structures beside the procedural families.
    pub structures: Arc<Vec<Structure>>,
    pub classes: Classes,
    /// The largest share of the noise that is the ice's own scattering
    /// ([`SceneConfig::ice_structure`]); each micrograph draws its share below it. 0 keeps the
    /// noise white, as the set was before the option existed.
    pub ice_structure: f64,
}

impl PretrainSet {
    /// The class names, in label order: one per structure family and one per real structure (or
    /// one for them all, coarse), the junk the simulated picker picks, then off-centre picks.
    pub fn classes(&self) -> Vec<String> {
        let particles: Vec<String> = match self.classes {
            Classes::Fine => Family::ALL
                .iter()
                .map(|f| format!("particle:{}", f.name()))
                .chain(
                    self.structures
                        .iter()
                        .map(|s| format!("particle:{}", s.name)),
                )
                .collect(),
            Classes::Coarse => vec!["particle".into()],
        };
        particles
            .into_iter()
            .chain(JUNK.iter().map(|l| l.name().to_string()))
            .chain([OFF_CENTRE.to_string()])
            .collect()
    }

    fn particle_kinds(&self) -> usize {
        Family::ALL.len() + self.structures.len()
    }

    fn particle_classes(&self) -> usize {
        match self.classes {
            Classes::Fine => self.particle_kinds(),
            Classes::Coarse => 1,
        }
    }

    /// Chunk `index`, at most `per_class` particles of each class, shuffled; micrographs are
    /// simulated in parallel on the current rayon pool, the result is the same on any pool.
    pub fn chunk(&self, index: u64, per_class: usize) -> Chunk {
        let n_classes = self.classes().len();
        let parts: Vec<(Vec<f32>, Vec<usize>)> = (0..self.micrographs as u64)
            .into_par_iter()
            .map(|m| self.micrograph(index * self.micrographs as u64 + m))
            .collect();
        let size = self.input_size;
        let s2 = size * size;
        let mut by_class: Vec<Vec<&[f32]>> = vec![Vec::new(); n_classes];
        for (images, labels) in &parts {
            for (k, &l) in labels.iter().enumerate() {
                by_class[l].push(&images[k * s2..(k + 1) * s2]);
            }
        }
        let mut rng = StdRng::seed_from_u64(mix(self.seed ^ 0x5EED, index));
        let mut chosen: Vec<(usize, &[f32])> = Vec::new();
        for (label, images) in by_class.iter_mut().enumerate() {
            images.shuffle(&mut rng);
            chosen.extend(images.iter().take(per_class).map(|&img| (label, img)));
        }
        chosen.shuffle(&mut rng);
        Chunk {
            size,
            images: chosen
                .iter()
                .flat_map(|(_, img)| img.iter().copied())
                .collect(),
            labels: chosen.iter().map(|&(l, _)| l).collect(),
        }
    }

    /// Micrograph `global`'s share of ice scattering, from a generator of its own so that
    /// every other draw stays what it was without it.
    fn ice_share(&self, global: u64) -> f64 {
        if self.ice_structure <= 0.0 {
            return 0.0;
        }
        StdRng::seed_from_u64(mix(self.seed ^ 0x1CE_5C47, global))
            .random_range(0.0..self.ice_structure.min(1.0))
    }

    /// One micrograph of the set, cut: (images, labels).
    fn micrograph(&self, global: u64) -> (Vec<f32>, Vec<usize>) {
        let mut rng = StdRng::seed_from_u64(mix(self.seed, global));
        let kind = rng.random_range(0..self.particle_kinds());
        // The particle spans 12 to 80 pixels, boxes 1.2 to 2.5 times that: sizes and samplings
        // of real datasets after the binning users apply.
        let (vol, extent, pixel, diameter_px) = match Family::ALL.get(kind) {
            Some(family) => {
                let atoms = family.atoms(&mut rng);
                let extent = atoms_extent(&atoms);
                let (diameter_px, pixel) = sampling(&mut rng, extent);
                (render_atoms(&atoms, pixel), extent, pixel, diameter_px)
            }
            None => {
                let structure = &self.structures[kind - Family::ALL.len()];
                let extent = structure.extent();
                let (diameter_px, pixel) = sampling(&mut rng, extent);
                (structure.volume(pixel), extent, pixel, diameter_px)
            }
        };
        let ratio: f64 = rng.random_range(1.2..2.5);
        let box_size = ((ratio * extent / pixel).round() as usize).max(16);
        let side = (6 * box_size).clamp(256, 768);
        let log_snr = rng.random_range(0.01f64.ln()..0.5f64.ln());
        let lo = rng.random_range(4_000.0..20_000.0);
        let config = SceneConfig {
            nx: side,
            ny: side,
            pixel,
            particle_density: rng.random_range(0.1..0.35),
            snr: log_snr.exp(),
            voltage: if rng.random::<f64>() < 0.8 {
                300.0
            } else {
                200.0
            },
            cs: rng.random_range(0.0..2.7),
            amplitude_contrast: rng.random_range(0.07..0.15),
            defocus: (lo, lo + rng.random_range(2_000.0..15_000.0)),
            astigmatism: rng.random_range(0.0..1500.0),
            b_factor: rng.random_range(20.0..200.0),
            ice_variation: rng.random_range(0.0..0.8),
            ice_structure: self.ice_share(global),
            carbon_probability: 0.6,
            ice_blobs: rng.random_range(0.5..2.5),
            aggregates: rng.random_range(1.0..4.0),
            picker: PickerModel {
                miss_rate: 0.1,
                // Off-centre picks: up to a sixth of the particle.
                jitter: rng.random_range(0.0..diameter_px / 6.0),
                carbon: 15.0,
                carbon_edge: 10.0,
                ice_per_blob: 6.0,
                empty: 20.0,
                aggregate: 0.9,
                score_separation: 2.0,
            },
            defects: Defects::default(),
        };
        let mut scene = simulate(&config, &vol, rng.random());
        // Half the micrographs look denoised (Topaz-denoise-like low-pass).
        let lowpass = (rng.random::<f64>() < 0.5).then(|| LowPass {
            cutoff: rng.random_range(0.2..0.6),
            width: LowPass::DEFAULT_WIDTH,
        });
        MicrographPrep {
            norm: MicrographNorm::ROBUST,
            lowpass,
        }
        .apply(&mut scene.image);
        let cfg = ExtractConfig {
            box_size,
            out_size: self.input_size,
            edge: EdgePolicy::PadNoise,
            norm: ParticleNorm::input_default(self.input_size),
            invert: rng.random::<bool>(),
            seed: rng.random(),
        };
        let Ok(mut extractor) = Extractor::new(cfg) else {
            return (Vec::new(), Vec::new());
        };
        let mut picks: Vec<(f64, f64)> = scene.picks.iter().map(|p| (p.x, p.y)).collect();
        let mut off_rng = StdRng::seed_from_u64(mix(self.seed ^ 0x0FF_CE17, global));
        picks.extend(off_centre(&mut off_rng, &scene.particles, diameter_px));
        let cut = extractor.extract(&scene.image, &picks, global);
        let first_junk = self.particle_classes();
        let labels = cut
            .kept
            .iter()
            .map(|&k| match scene.picks.get(k).map(|p| p.label) {
                None => first_junk + JUNK.len(),
                Some(Label::Particle) if self.classes == Classes::Fine => kind,
                Some(Label::Particle) => 0,
                Some(junk) => {
                    let j = JUNK.iter().position(|&l| l == junk).expect("a junk label");
                    first_junk + j
                }
            })
            .collect();
        (cut.data, labels)
    }
}

/// Places beside about a third of the particles: 0.3 to 0.6 diameters from its centre, in any
/// direction, and no nearer than a quarter diameter to any particle's centre (so never a
/// centred pick of a neighbour).
fn off_centre(rng: &mut StdRng, particles: &[(f64, f64)], diameter: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for &(x, y) in particles {
        if rng.random::<f64>() >= 1.0 / 3.0 {
            continue;
        }
        let r = diameter * rng.random_range(0.3..0.6);
        let a = rng.random_range(0.0..TAU);
        let (px, py) = (x + r * a.cos(), y + r * a.sin());
        let clear = particles
            .iter()
            .all(|&(qx, qy)| (qx - px).hypot(qy - py) >= 0.25 * diameter);
        if clear {
            out.push((px, py));
        }
    }
    out
}

/// A particle diameter in pixels (12 to 80) for a structure of `extent` Å, and the pixel size
/// that gives it (0.8 to 12 Å).
fn sampling(rng: &mut StdRng, extent: f64) -> (f64, f64) {
    let diameter_px: f64 = rng.random_range(12.0..80.0);
    (diameter_px, (extent / diameter_px).clamp(0.8, 12.0))
}

/// A seed for item `i` of stream `seed` (SplitMix64's finaliser), so neighbouring items share
/// nothing.
fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> PretrainSet {
        PretrainSet {
            input_size: 24,
            seed: 3,
            micrographs: 24,
            structures: Arc::new(Vec::new()),
            classes: Classes::Fine,
            ice_structure: 0.0,
        }
    }

    #[test]
    fn ice_scattering_changes_the_images_and_nothing_else() {
        let white = set().chunk(0, 20);
        let scattering = PretrainSet {
            ice_structure: 0.5,
            ..set()
        };
        let ice = scattering.chunk(0, 20);
        // The same particles and junk, picked and cut at the same places: only the noise moved.
        assert_eq!(white.labels, ice.labels);
        assert_ne!(white.images, ice.images);
        assert_eq!(ice, scattering.chunk(0, 20));
        let shares: Vec<f64> = (0..50).map(|g| scattering.ice_share(g)).collect();
        assert!(shares.iter().all(|s| (0.0..0.5).contains(s)), "{shares:?}");
        assert!(shares.iter().any(|&s| s < 0.1) && shares.iter().any(|&s| s > 0.4));
        assert!((0..50).all(|g| set().ice_share(g) == 0.0));
    }

    #[test]
    fn a_chunk_is_the_same_for_a_seed_on_any_pool() {
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| set().chunk(1, 20));
        let three = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap()
            .install(|| set().chunk(1, 20));
        assert_eq!(one, three);
        assert_ne!(one, set().chunk(2, 20), "chunks differ");
        assert_eq!(one.images.len(), one.labels.len() * 24 * 24);
        assert!(one.images.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn every_class_is_present_and_none_dominates() {
        let chunk = set().chunk(0, 20);
        let names = set().classes();
        let mut counts = vec![0usize; names.len()];
        for &l in &chunk.labels {
            counts[l] += 1;
        }
        // Each micrograph holds one family, so 24 micrographs reach most of the 8; the junk
        // classes come from every micrograph.
        let particles = counts[..Family::ALL.len()]
            .iter()
            .filter(|&&c| c > 0)
            .count();
        assert!(particles >= 6, "{counts:?}");
        for (name, &c) in names.iter().zip(&counts).skip(Family::ALL.len()) {
            assert!(c > 0, "no {name}: {counts:?}");
        }
        assert!(counts.iter().all(|&c| c <= 20), "{counts:?}");
        assert_eq!(names.len(), 13);
        assert_eq!(names[12], OFF_CENTRE);
    }

    #[test]
    fn coarse_classes_merge_the_particles_and_keep_the_junk_kinds() {
        let coarse = PretrainSet {
            classes: Classes::Coarse,
            ..set()
        };
        let names = coarse.classes();
        assert_eq!(
            names,
            [
                "particle",
                "carbon",
                "ice",
                "aggregate",
                "empty",
                OFF_CENTRE
            ]
        );
        let chunk = coarse.chunk(0, 20);
        let mut counts = vec![0usize; names.len()];
        for &l in &chunk.labels {
            counts[l] += 1;
        }
        assert!(counts.iter().all(|&c| c > 0 && c <= 20), "{counts:?}");
        assert_eq!(counts[0], 20, "24 micrographs hold more than 20 particles");
    }

    #[test]
    fn off_centre_places_lie_beside_a_particle_and_on_none() {
        let particles: Vec<(f64, f64)> = (0..300)
            .map(|i| (40.0 * (i % 20) as f64, 40.0 * (i / 20) as f64))
            .collect();
        let mut rng = StdRng::seed_from_u64(5);
        let places = off_centre(&mut rng, &particles, 40.0);
        assert!((60..140).contains(&places.len()), "{}", places.len());
        for &(x, y) in &places {
            let nearest = particles
                .iter()
                .map(|&(px, py)| (px - x).hypot(py - y))
                .fold(f64::INFINITY, f64::min);
            assert!((10.0..=24.0).contains(&nearest), "{nearest}");
        }
    }

    #[test]
    fn families_differ_and_members_of_a_family_vary() {
        let mut rng = StdRng::seed_from_u64(1);
        let extents: Vec<f64> = Family::ALL
            .iter()
            .map(|f| atoms_extent(&f.atoms(&mut rng)))
            .collect();
        assert!(
            extents.iter().all(|&e| (30.0..400.0).contains(&e)),
            "{extents:?}"
        );
        let a = atoms_extent(&Family::Rod.atoms(&mut rng));
        let b = atoms_extent(&Family::Rod.atoms(&mut rng));
        assert_ne!(a, b);
    }

    #[test]
    fn real_maps_and_models_join_as_classes_of_their_own() {
        let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/sources");
        if !sources.is_dir() {
            eprintln!("skipped: ../shared/data not present");
            return;
        }
        let structures: Vec<Structure> = ["cryodrgn/spike-vol.mrc", "biopython/Tests/PDB/1A8O.pdb"]
            .iter()
            .map(|f| Structure::read(&sources.join(f)).unwrap())
            .collect();
        let with = PretrainSet {
            structures: Arc::new(structures),
            micrographs: 30,
            ..set()
        };
        let names = with.classes();
        assert_eq!(names.len(), 15);
        assert_eq!(names[8..10], ["particle:spike-vol", "particle:1A8O"]);
        assert_eq!(names[10], "carbon");
        let chunk = with.chunk(0, 20);
        let mut counts = vec![0usize; names.len()];
        for &l in &chunk.labels {
            counts[l] += 1;
        }
        // 30 micrographs of 10 kinds: both real structures are drawn, and junk follows them.
        assert!(counts[8] > 0 && counts[9] > 0, "{counts:?}");
        assert!(counts[10..].iter().all(|&c| c > 0), "{counts:?}");
        assert!(chunk.images.iter().all(|v| v.is_finite()));
        // The same seed and structures give the same chunk.
        let again = PretrainSet {
            structures: with.structures.clone(),
            ..with.clone()
        };
        assert_eq!(again.chunk(0, 20), chunk);

        let err = Structure::read(&sources.join("relion/tests/ref_shifted_image.mrc"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("3D map"), "{err}");
        let err = Structure::read(Path::new("notes.txt"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected a map"), "{err}");
    }
}

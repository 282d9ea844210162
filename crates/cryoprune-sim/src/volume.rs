//! 3D densities to project: an MRC map, an atomic model rendered as Gaussian atoms, or a built-in
//! procedural "protein".

use std::path::Path;

use cryoprune_formats::MrcFile;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use crate::{Error, Result};

/// A cubic density, `data[(z * n + y) * n + x]`, centred on voxel (n/2, n/2, n/2).
#[derive(Debug, Clone)]
pub struct Volume {
    pub n: usize,
    pub data: Vec<f32>,
    /// Å per voxel.
    pub voxel: f64,
}

impl Volume {
    pub fn zeros(n: usize, voxel: f64) -> Volume {
        Volume {
            n,
            data: vec![0.0; n * n * n],
            voxel,
        }
    }

    #[inline]
    pub fn get(&self, x: usize, y: usize, z: usize) -> f32 {
        self.data[(z * self.n + y) * self.n + x]
    }

    /// Reads a map; a non-cubic map is padded to a cube with zeros, keeping its centre.
    pub fn from_mrc(path: &Path) -> Result<Volume> {
        let f = MrcFile::open(path)?;
        let h = f.header();
        let (nx, ny, nz) = (h.nx, h.ny, h.nz);
        let voxel = h.voxel_size()[0] as f64;
        if nz < 2 {
            return Err(Error::Input(format!(
                "{}: a 3D map is needed, this file holds a {nx}x{ny} image",
                path.display()
            )));
        }
        let src = f.read_all();
        let n = nx.max(ny).max(nz);
        let mut vol = Volume::zeros(n, if voxel > 0.0 { voxel } else { 1.0 });
        let (ox, oy, oz) = ((n - nx) / 2, (n - ny) / 2, (n - nz) / 2);
        for z in 0..nz {
            for y in 0..ny {
                let s = (z * ny + y) * nx;
                let d = ((z + oz) * n + y + oy) * n + ox;
                vol.data[d..d + nx].copy_from_slice(&src[s..s + nx]);
            }
        }
        Ok(vol)
    }

    /// Sum of every voxel: the projection of any orientation sums to this.
    pub fn total(&self) -> f64 {
        self.data.iter().map(|&v| v as f64).sum()
    }

    /// Radius (voxels) from the centre within which 98% of the density above 5% of the maximum
    /// lies, so particles can be placed without overlapping. Maps carry low-level noise out to
    /// their corners; the threshold ignores it and the mass fraction ignores stray voxels.
    pub fn radius(&self) -> f64 {
        const BINS_PER_VOXEL: f64 = 4.0;
        let floor = 0.05 * self.data.iter().cloned().fold(0.0f32, f32::max);
        let c = (self.n / 2) as f64;
        let bins = (self.n as f64 * BINS_PER_VOXEL) as usize + 1;
        let mut hist = vec![0.0f64; bins];
        for z in 0..self.n {
            for y in 0..self.n {
                for x in 0..self.n {
                    let v = self.get(x, y, z);
                    if v > floor {
                        let d = ((x as f64 - c).powi(2)
                            + (y as f64 - c).powi(2)
                            + (z as f64 - c).powi(2))
                        .sqrt();
                        hist[((d * BINS_PER_VOXEL) as usize).min(bins - 1)] += v as f64;
                    }
                }
            }
        }
        let total: f64 = hist.iter().sum();
        let mut acc = 0.0;
        for (i, h) in hist.iter().enumerate() {
            acc += h;
            if acc >= 0.98 * total {
                return (i + 1) as f64 / BINS_PER_VOXEL;
            }
        }
        c
    }
}

/// An atom: position in Å and weight (atomic number).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Atom {
    pub pos: [f64; 3],
    pub weight: f64,
}

/// Gaussian blobs of about the width of an atom at ~4 Å resolution, so the density looks like a
/// map rather than a set of points at the sampling cryoprune uses (2-5 Å per pixel).
const ATOM_SIGMA: f64 = 1.5;

/// The atoms of an atomic model (PDB or mmCIF).
pub fn read_atoms(path: &Path) -> Result<Vec<Atom>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Input(format!("{}: cannot read the model: {e}", path.display())))?;
    crate::atoms::parse(&text, path)
}

/// The largest distance between the structure's centre and a bead, doubled: its extent in Å.
pub fn atoms_extent(atoms: &[Atom]) -> f64 {
    let n = atoms.len().max(1) as f64;
    let mut c = [0.0; 3];
    for a in atoms {
        for (c, p) in c.iter_mut().zip(a.pos) {
            *c += p / n;
        }
    }
    let r2 = atoms
        .iter()
        .map(|a| (0..3).map(|i| (a.pos[i] - c[i]).powi(2)).sum::<f64>())
        .fold(0.0, f64::max);
    2.0 * r2.sqrt() + 10.0
}

/// Renders atoms as a sum of Gaussians weighted by atomic number, on a grid of `voxel` Å,
/// centred on their centre of mass. The grid's side grows as the extent over `voxel`, its
/// memory as the cube of that: callers taking a user's pixel size check it first.
pub fn render_atoms(atoms: &[Atom], voxel: f64) -> Volume {
    let total: f64 = atoms.iter().map(|a| a.weight).sum();
    let mut centre = [0.0; 3];
    for a in atoms {
        for (c, p) in centre.iter_mut().zip(a.pos) {
            *c += p * a.weight / total;
        }
    }
    let extent = atoms
        .iter()
        .map(|a| {
            (0..3)
                .map(|i| (a.pos[i] - centre[i]).powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .fold(0.0, f64::max);
    let sigma = ATOM_SIGMA.max(voxel / 2.0) / voxel;
    let n = (2.0 * (extent / voxel + 4.0 * sigma)).ceil() as usize + 2;
    let mut vol = Volume::zeros(n, voxel);
    let c = (n / 2) as f64;
    let reach = (3.0 * sigma).ceil() as i64;
    for a in atoms {
        let p: Vec<f64> = (0..3).map(|i| (a.pos[i] - centre[i]) / voxel + c).collect();
        let (px, py, pz) = (p[0], p[1], p[2]);
        for z in (pz.round() as i64 - reach)..=(pz.round() as i64 + reach) {
            for y in (py.round() as i64 - reach)..=(py.round() as i64 + reach) {
                for x in (px.round() as i64 - reach)..=(px.round() as i64 + reach) {
                    if x < 0 || y < 0 || z < 0 || x >= n as i64 || y >= n as i64 || z >= n as i64 {
                        continue;
                    }
                    let d2 =
                        (x as f64 - px).powi(2) + (y as f64 - py).powi(2) + (z as f64 - pz).powi(2);
                    let v = a.weight * (-d2 / (2.0 * sigma * sigma)).exp();
                    vol.data[((z as usize) * n + y as usize) * n + x as usize] += v as f32;
                }
            }
        }
    }
    vol
}

/// The built-in shapes, for when the user gives no map or model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// A compact globular protein, ~90 Å across.
    Globular,
    /// A curved rod, ~180 Å long (a filament segment or an elongated complex).
    Elongated,
    /// A ring of subunits with a central channel, ~140 Å across (a chaperonin-like top view).
    Ring,
}

impl Builtin {
    pub const ALL: [Builtin; 3] = [Builtin::Globular, Builtin::Elongated, Builtin::Ring];

    pub fn name(self) -> &'static str {
        match self {
            Builtin::Globular => "globular",
            Builtin::Elongated => "elongated",
            Builtin::Ring => "ring",
        }
    }

    pub fn from_name(name: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.name() == name)
    }

    /// Pseudo-atoms (Å) for the shape: residues as unit-weight beads along chains, so the
    /// density has secondary-structure-like texture rather than smooth balls. Fixed seed: the
    /// shape is part of the program, not of a run.
    pub fn atoms(self) -> Vec<Atom> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(self as u64 + 11);
        let mut atoms = Vec::new();
        let mut domain = |centre: [f64; 3], radius: f64, beads: usize, atoms: &mut Vec<Atom>| {
            bead_domain(&mut rng, centre, radius, beads, atoms)
        };
        match self {
            Builtin::Globular => {
                for c in [
                    [0.0, 0.0, 0.0],
                    [22.0, 8.0, -5.0],
                    [-15.0, 18.0, 10.0],
                    [-5.0, -20.0, 12.0],
                ] {
                    domain(c, 16.0, 350, &mut atoms);
                }
            }
            Builtin::Elongated => {
                for i in 0..7 {
                    let t = i as f64 / 6.0 - 0.5;
                    let c = [
                        160.0 * t,
                        30.0 * (std::f64::consts::PI * t).cos() - 15.0,
                        0.0,
                    ];
                    domain(c, 12.0, 220, &mut atoms);
                }
            }
            Builtin::Ring => {
                for i in 0..7 {
                    let a = i as f64 * std::f64::consts::TAU / 7.0;
                    let c = [55.0 * a.cos(), 55.0 * a.sin(), 0.0];
                    domain(c, 13.0, 260, &mut atoms);
                }
            }
        }
        atoms
    }

    pub fn volume(self, voxel: f64) -> Volume {
        render_atoms(&self.atoms(), voxel)
    }
}

/// A compact random walk of `beads` beads (3.8 Å steps, like Cα) around `centre`, kept within
/// `radius` of it: a protein domain with secondary-structure-like texture.
pub fn bead_domain(
    rng: &mut impl Rng,
    centre: [f64; 3],
    radius: f64,
    beads: usize,
    atoms: &mut Vec<Atom>,
) {
    let jitter = Normal::new(0.0, 2.0).expect("valid normal");
    let mut p = centre;
    for _ in 0..beads {
        let mut step = [0.0; 3];
        for s in &mut step {
            *s = rng.random_range(-1.0..1.0);
        }
        let len = step.iter().map(|s| s * s).sum::<f64>().sqrt().max(1e-6);
        for i in 0..3 {
            p[i] += 3.8 * step[i] / len;
            // Pull back towards the centre to stay compact.
            let d = p[i] - centre[i];
            if d.abs() > radius {
                p[i] = centre[i] + d.signum() * radius + jitter.sample(rng) * 0.1;
            }
        }
        atoms.push(Atom {
            pos: p,
            weight: 7.0,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_differ_in_size_and_shape() {
        let vols: Vec<Volume> = Builtin::ALL.iter().map(|b| b.volume(4.0)).collect();
        let radii: Vec<f64> = vols.iter().map(|v| v.radius() * 4.0).collect();
        // Globular ~45 Å radius, ring ~70 Å, elongated ~90 Å.
        assert!(radii[0] > 30.0 && radii[0] < 60.0, "{radii:?}");
        assert!(radii[1] > 75.0 && radii[1] < 120.0, "{radii:?}");
        assert!(radii[2] > 55.0 && radii[2] < 90.0, "{radii:?}");
        // The ring has a hole: little density at its centre.
        let ring = &vols[2];
        let c = ring.n / 2;
        let max = ring.data.iter().cloned().fold(0.0f32, f32::max);
        assert!(ring.get(c, c, c) < 0.05 * max);
    }

    #[test]
    fn atoms_render_centred_with_their_total_weight() {
        let atoms = [
            Atom {
                pos: [10.0, 0.0, 0.0],
                weight: 6.0,
            },
            Atom {
                pos: [-10.0, 0.0, 0.0],
                weight: 6.0,
            },
        ];
        let vol = render_atoms(&atoms, 1.0);
        let c = vol.n / 2;
        // Peaks 10 voxels either side of the centre on x.
        assert!(vol.get(c + 10, c, c) > vol.get(c + 8, c, c));
        assert!((vol.get(c + 10, c, c) - vol.get(c - 10, c, c)).abs() < 1e-5);
        // A sampled Gaussian sums to weight * (2π σ²)^(3/2).
        let want = 12.0 * (2.0 * std::f64::consts::PI * ATOM_SIGMA * ATOM_SIGMA).powf(1.5);
        assert!(
            (vol.total() / want - 1.0).abs() < 1e-3,
            "{} vs {want}",
            vol.total()
        );
    }
}

//! Projections of a volume in uniformly random orientations.

use cryoprune_image::fourier::resize_centred;
use cryoprune_image::Image;
use rand::Rng;

use crate::volume::Volume;

/// A rotation matrix; a particle in orientation `R` has lab-frame density ρ(Rᵀ r).
pub type Rotation = [[f64; 3]; 3];

pub const IDENTITY: Rotation = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

/// A rotation drawn uniformly from SO(3) (Shoemake's uniform unit quaternion).
pub fn random_rotation(rng: &mut impl Rng) -> Rotation {
    let (u1, u2, u3): (f64, f64, f64) = (rng.random(), rng.random(), rng.random());
    let tau = std::f64::consts::TAU;
    let (a, b) = ((1.0 - u1).sqrt(), u1.sqrt());
    let (w, x, y, z) = (
        a * (tau * u2).sin(),
        a * (tau * u2).cos(),
        b * (tau * u3).sin(),
        b * (tau * u3).cos(),
    );
    [
        [
            1.0 - 2.0 * (y * y + z * z),
            2.0 * (x * y - z * w),
            2.0 * (x * z + y * w),
        ],
        [
            2.0 * (x * y + z * w),
            1.0 - 2.0 * (x * x + z * z),
            2.0 * (y * z - x * w),
        ],
        [
            2.0 * (x * z - y * w),
            2.0 * (y * z + x * w),
            1.0 - 2.0 * (x * x + y * y),
        ],
    ]
}

/// Line integrals of the volume along lab z in orientation `rot`, on the volume's own grid
/// (`n` x `n`, centre at (n/2, n/2), one value per voxel step along the ray, trilinear).
pub fn project(vol: &Volume, rot: &Rotation) -> Image {
    project_within(vol, rot, vol.radius())
}

/// As [`project`], for density known to lie within `radius` voxels of the centre (rays and
/// pixels beyond it are skipped; [`Volume::radius`] costs a pass over the volume, so callers
/// projecting many times compute it once).
pub fn project_within(vol: &Volume, rot: &Rotation, radius: f64) -> Image {
    let n = vol.n;
    let c = (n / 2) as f64;
    // Whole steps, so rays sample the grid planes exactly in the unrotated case.
    let reach = (radius + 2.0).min(c * 1.75).ceil();
    let steps = (2.0 * reach).ceil() as usize + 1;
    let mut out = Image::zeros(n, n);
    // Step along the ray: Rᵀ (0, 0, 1), row 2 of R.
    let step = [rot[2][0], rot[2][1], rot[2][2]];
    for v in 0..n {
        for u in 0..n {
            let (du, dv) = (u as f64 - c, v as f64 - c);
            if du * du + dv * dv > reach * reach {
                continue;
            }
            // Rᵀ (u, v, -reach): row i of Rᵀ is column i of R.
            let mut p = [0.0; 3];
            for (i, p) in p.iter_mut().enumerate() {
                *p = rot[0][i] * du + rot[1][i] * dv - step[i] * reach + c;
            }
            let mut sum = 0.0f32;
            for _ in 0..steps {
                sum += trilinear(vol, p[0], p[1], p[2]);
                for i in 0..3 {
                    p[i] += step[i];
                }
            }
            out.set(u, v, sum);
        }
    }
    out
}

fn trilinear(vol: &Volume, x: f64, y: f64, z: f64) -> f32 {
    let n = vol.n as isize;
    if x < -1.0 || y < -1.0 || z < -1.0 {
        return 0.0;
    }
    // Truncation of a value >= 0 is its floor, and much cheaper than calling floor().
    let (x0, y0, z0) = (
        (x + 1.0) as isize - 1,
        (y + 1.0) as isize - 1,
        (z + 1.0) as isize - 1,
    );
    let (fx, fy, fz) = (
        (x - x0 as f64) as f32,
        (y - y0 as f64) as f32,
        (z - z0 as f64) as f32,
    );
    if x0 < -1 || y0 < -1 || z0 < -1 || x0 >= n || y0 >= n || z0 >= n {
        return 0.0;
    }
    if x0 < 0 || y0 < 0 || z0 < 0 || x0 + 1 >= n || y0 + 1 >= n || z0 + 1 >= n {
        // On the border: voxels outside the grid count as zero.
        let at = |x: isize, y: isize, z: isize| -> f32 {
            if x < 0 || y < 0 || z < 0 || x >= n || y >= n || z >= n {
                0.0
            } else {
                vol.data[((z * n + y) * n + x) as usize]
            }
        };
        let mut sum = 0.0;
        for (dz, wz) in [(0, 1.0 - fz), (1, fz)] {
            for (dy, wy) in [(0, 1.0 - fy), (1, fy)] {
                for (dx, wx) in [(0, 1.0 - fx), (1, fx)] {
                    sum += wx * wy * wz * at(x0 + dx, y0 + dy, z0 + dz);
                }
            }
        }
        return sum;
    }
    let n = n as usize;
    let i = (z0 as usize * n + y0 as usize) * n + x0 as usize;
    let d = &vol.data;
    let lerp = |a: f32, b: f32, t: f32| a + (b - a) * t;
    let c00 = lerp(d[i], d[i + 1], fx);
    let c10 = lerp(d[i + n], d[i + n + 1], fx);
    let c01 = lerp(d[i + n * n], d[i + n * n + 1], fx);
    let c11 = lerp(d[i + n * n + n], d[i + n * n + n + 1], fx);
    lerp(lerp(c00, c10, fy), lerp(c01, c11, fy), fz)
}

/// A projection resampled from the volume's voxel size to `pixel` Å by Fourier cropping or
/// padding (so coarse pixels average rather than alias). The size is kept even, so the centre
/// stays on pixel (m/2, m/2); the scale is then exact to within half a pixel over the box.
pub fn project_at(vol: &Volume, rot: &Rotation, pixel: f64, radius: f64) -> Image {
    let p = project_within(vol, rot, radius);
    let m = ((vol.n as f64 * vol.voxel / pixel / 2.0).round() as usize * 2).max(2);
    if m == vol.n {
        return p;
    }
    resize_centred(&p, m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn gaussian_volume(n: usize, sigma: f64, offset: [f64; 3]) -> Volume {
        let mut v = Volume::zeros(n, 2.0);
        let c = (n / 2) as f64;
        for z in 0..n {
            for y in 0..n {
                for x in 0..n {
                    let d2 = (x as f64 - c - offset[0]).powi(2)
                        + (y as f64 - c - offset[1]).powi(2)
                        + (z as f64 - c - offset[2]).powi(2);
                    v.data[(z * n + y) * n + x] = (-d2 / (2.0 * sigma * sigma)).exp() as f32;
                }
            }
        }
        v
    }

    #[test]
    fn random_rotations_are_orthonormal_and_uniform() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut mean_z = [0.0; 3];
        let k = 4000;
        for _ in 0..k {
            let r = random_rotation(&mut rng);
            for i in 0..3 {
                for j in 0..3 {
                    let dot: f64 = (0..3).map(|m| r[i][m] * r[j][m]).sum();
                    assert!((dot - if i == j { 1.0 } else { 0.0 }).abs() < 1e-9);
                }
                mean_z[i] += r[i][2] / k as f64;
            }
            let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1])
                - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
                + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
            assert!((det - 1.0).abs() < 1e-9);
        }
        // Uniform rotations send z to a uniformly random direction: mean near 0.
        assert!(mean_z.iter().all(|m| m.abs() < 0.05), "{mean_z:?}");
    }

    #[test]
    fn identity_projection_is_the_sum_along_z() {
        let vol = gaussian_volume(24, 3.0, [2.0, -3.0, 1.0]);
        let p = project(&vol, &IDENTITY);
        let n = vol.n;
        for (u, v) in [(12, 12), (14, 9), (10, 15)] {
            let direct: f32 = (0..n).map(|z| vol.get(u, v, z)).sum();
            assert!(
                (p.get(u, v) - direct).abs() < 1e-4 * direct.max(1e-3),
                "({u},{v}) {} vs {direct}",
                p.get(u, v)
            );
        }
    }

    #[test]
    fn projection_of_a_gaussian_is_the_analytic_gaussian_in_any_orientation() {
        // ∫ exp(-|r - a|²/2σ²) dz = √(2π) σ exp(-|(u,v) - (Ra)_xy|²/2σ²).
        let sigma = 2.5;
        let off = [3.0, -2.0, 4.0];
        let vol = gaussian_volume(40, sigma, off);
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for _ in 0..3 {
            let r = random_rotation(&mut rng);
            let p = project(&vol, &r);
            let a: Vec<f64> = (0..3)
                .map(|i| (0..3).map(|j| r[i][j] * off[j]).sum())
                .collect();
            let amp = (2.0 * std::f64::consts::PI).sqrt() * sigma;
            let mut worst = 0.0f64;
            for v in 0..40 {
                for u in 0..40 {
                    let d2 = (u as f64 - 20.0 - a[0]).powi(2) + (v as f64 - 20.0 - a[1]).powi(2);
                    let want = amp * (-d2 / (2.0 * sigma * sigma)).exp();
                    worst = worst.max((p.get(u, v) as f64 - want).abs());
                }
            }
            // Trilinear interpolation of a 2.5-voxel Gaussian is good to a few percent of the peak.
            assert!(worst < 0.03 * amp, "{worst} vs peak {amp}");
        }
    }

    #[test]
    fn resampled_projection_keeps_centre_and_integral() {
        let vol = gaussian_volume(32, 3.0, [0.0; 3]);
        let fine = project(&vol, &IDENTITY);
        let coarse = project_at(&vol, &IDENTITY, 5.0, vol.radius());
        assert_eq!(coarse.nx, 12);
        assert_eq!(coarse.argmax(), (6, 6));
        let sf: f64 = fine.data.iter().map(|&v| v as f64).sum();
        let sc: f64 = coarse.data.iter().map(|&v| v as f64).sum();
        // Fourier cropping keeps pixel values, so the sum scales with the pixel count.
        let ratio = sc / sf * (32.0 * 32.0) / (12.0 * 12.0);
        assert!((ratio - 1.0).abs() < 1e-3, "{ratio}");
    }
}

//! The contrast transfer function of a transmission electron microscope, applied in Fourier
//! space: CTF(k) = -(√(1-A²) sin χ + A cos χ) · exp(-B k²/4), with
//! χ(k) = π λ Δf k² - π/2 Cs λ³ k⁴ (the sign and astigmatism conventions of CTFFIND/RELION:
//! positive defocus is underfocus, Δf(θ) = (Δf₁+Δf₂)/2 + (Δf₁-Δf₂)/2 cos 2(θ - θ_ast)).

use cryoprune_image::fourier::{Fft2, Spectrum};
use cryoprune_image::Image;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ctf {
    /// Acceleration voltage, kV.
    pub voltage: f64,
    /// Spherical aberration, mm.
    pub cs: f64,
    /// Amplitude contrast (fraction, typically 0.07-0.1).
    pub amplitude_contrast: f64,
    /// Defocus along the major and minor axes, Å (positive = underfocus).
    pub defocus_u: f64,
    pub defocus_v: f64,
    /// Angle of the major axis from x, degrees.
    pub astigmatism_angle: f64,
    /// B-factor envelope, Å².
    pub b_factor: f64,
}

impl Ctf {
    /// Relativistic electron wavelength in Å.
    pub fn wavelength(&self) -> f64 {
        let v = self.voltage * 1e3;
        12.264_259_8 / (v * (1.0 + 0.978_466e-6 * v)).sqrt()
    }

    fn phase_shift(&self) -> f64 {
        let a = self.amplitude_contrast;
        a.atan2((1.0 - a * a).sqrt())
    }

    /// The CTF at spatial frequency (kx, ky) in 1/Å.
    pub fn value(&self, kx: f64, ky: f64) -> f64 {
        let k2 = kx * kx + ky * ky;
        let lambda = self.wavelength();
        let theta = ky.atan2(kx);
        let ast = self.astigmatism_angle.to_radians();
        let df = 0.5 * (self.defocus_u + self.defocus_v)
            + 0.5 * (self.defocus_u - self.defocus_v) * (2.0 * (theta - ast)).cos();
        let cs = self.cs * 1e7;
        let chi = std::f64::consts::PI * lambda * df * k2
            - 0.5 * std::f64::consts::PI * cs * lambda.powi(3) * k2 * k2;
        -(chi + self.phase_shift()).sin() * (-self.b_factor * k2 / 4.0).exp()
    }

    /// Spatial frequencies (1/Å) of the first `count` zeros along a direction where the defocus
    /// is `df`, with no spherical aberration (the closed form the tests check against).
    pub fn zeros_without_cs(&self, df: f64, count: usize) -> Vec<f64> {
        let lambda = self.wavelength();
        let phi = self.phase_shift();
        // χ + φ = nπ with χ = π λ Δf k².
        (1..=count)
            .map(|n| {
                ((n as f64 * std::f64::consts::PI - phi) / (std::f64::consts::PI * lambda * df))
                    .sqrt()
            })
            .collect()
    }

    /// Multiplies a spectrum of an image with `pixel` Å per pixel by the CTF.
    pub fn apply_to(&self, spec: &mut Spectrum, pixel: f64) {
        let (nx, ny) = (spec.nx, spec.ny);
        for kx in 0..spec.hx() {
            for ky in 0..ny {
                let fx = kx as f64 / (nx as f64 * pixel);
                let fy = cryoprune_image::fourier::signed_freq(ky, ny) as f64 / (ny as f64 * pixel);
                spec.data[kx * ny + ky] *= self.value(fx, fy) as f32;
            }
        }
    }

    /// The image as the microscope records it (before noise).
    pub fn apply(&self, image: &Image, pixel: f64) -> Image {
        let mut fft = Fft2::new(image.nx, image.ny);
        let mut spec = fft.forward(&image.data);
        self.apply_to(&mut spec, pixel);
        fft.inverse(&mut spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctf(df: f64, cs: f64) -> Ctf {
        Ctf {
            voltage: 300.0,
            cs,
            amplitude_contrast: 0.1,
            defocus_u: df,
            defocus_v: df,
            astigmatism_angle: 0.0,
            b_factor: 0.0,
        }
    }

    #[test]
    fn wavelength_at_300_kv() {
        // 0.0197 Å at 300 kV, 0.0251 Å at 200 kV.
        assert!((ctf(1e4, 2.7).wavelength() - 0.019_687).abs() < 1e-5);
        let c = Ctf {
            voltage: 200.0,
            ..ctf(1e4, 2.7)
        };
        assert!((c.wavelength() - 0.025_079).abs() < 1e-5);
    }

    #[test]
    fn zeros_fall_at_the_closed_form_frequencies() {
        let c = ctf(15_000.0, 0.0);
        let zeros = c.zeros_without_cs(15_000.0, 5);
        for z in &zeros {
            assert!(c.value(*z, 0.0).abs() < 1e-9, "{z}");
            // And it changes sign across each zero.
            assert!(c.value(z * 0.99, 0.0) * c.value(z * 1.01, 0.0) < 0.0);
        }
        // First zero of 1.5 µm underfocus at 300 kV, 10% amplitude contrast: 1/(17.5 Å).
        assert!((1.0 / zeros[0] - 17.47).abs() < 0.05, "{}", 1.0 / zeros[0]);
    }

    #[test]
    fn zeros_of_the_sampled_ctf_image_match_the_closed_form() {
        // A delta function's image is the CTF's point spread; its spectrum is the CTF itself.
        let (n, pixel) = (256, 1.5);
        let mut img = Image::zeros(n, n);
        img.set(0, 0, 1.0);
        let c = ctf(12_000.0, 0.0);
        let out = c.apply(&img, pixel);
        let spec = Fft2::new(n, n).forward(&out.data);
        // Along kx: sign changes of the real part between bins bracket the zeros.
        let mut found = Vec::new();
        for k in 1..n / 2 {
            let (a, b) = (spec.at(k, 0).re, spec.at(k + 1, 0).re);
            if a * b < 0.0 {
                found.push((k as f64 + a as f64 / (a - b) as f64) / (n as f64 * pixel));
            }
        }
        let want = c.zeros_without_cs(12_000.0, 4);
        for (f, w) in found.iter().zip(&want) {
            assert!((f - w).abs() < 0.5 / (n as f64 * pixel), "{f} vs {w}");
        }
    }

    #[test]
    fn astigmatism_moves_zeros_with_direction() {
        let c = Ctf {
            defocus_u: 20_000.0,
            defocus_v: 10_000.0,
            astigmatism_angle: 0.0,
            ..ctf(0.0, 0.0)
        };
        let along_u = c.zeros_without_cs(20_000.0, 1)[0];
        let along_v = c.zeros_without_cs(10_000.0, 1)[0];
        assert!(c.value(along_u, 0.0).abs() < 1e-9);
        assert!(c.value(0.0, along_v).abs() < 1e-9);
        assert!(along_u < along_v);
    }
}

//! Turning model.json's [`Preprocessing`] into an extraction pipeline, so that every command cuts
//! particles the way the model was trained on them.

use cryoprune_image::extract::{EdgePolicy, ExtractConfig, ParticleNorm};
use cryoprune_image::fourier::Cutoff;
use cryoprune_image::normalize::MicrographNorm;
use cryoprune_image::pipeline::Pipeline;
use cryoprune_model::Preprocessing;

use crate::Error;

pub fn parse_normalize(s: &str) -> Result<MicrographNorm, Error> {
    match s {
        "none" => Ok(MicrographNorm::None),
        "meanstd" => Ok(MicrographNorm::MeanStd),
        _ => {
            let bad = || {
                Error::Config(format!(
                    "normalisation `{s}`: expected none, meanstd or robust:LOW,HIGH"
                ))
            };
            let rest = s.strip_prefix("robust").ok_or_else(bad)?;
            let (low, high) = match rest.strip_prefix(':') {
                None if rest.is_empty() => (0.5, 99.5),
                Some(r) => {
                    let (a, b) = r.split_once(',').ok_or_else(bad)?;
                    (
                        a.trim().parse().map_err(|_| bad())?,
                        b.trim().parse().map_err(|_| bad())?,
                    )
                }
                None => return Err(bad()),
            };
            if !(0.0..=100.0).contains(&low) || !(0.0..=100.0).contains(&high) || low >= high {
                return Err(bad());
            }
            Ok(MicrographNorm::Robust { low, high })
        }
    }
}

/// `20A` (resolution in Å) or `0.5nyquist`; a bare number is Å.
pub fn parse_lowpass(s: &str) -> Result<Cutoff, Error> {
    let bad = || {
        Error::Config(format!(
            "low-pass `{s}`: expected a resolution like 20A or a fraction like 0.5nyquist"
        ))
    };
    let lower = s.trim().to_ascii_lowercase();
    let (number, nyquist) = if let Some(n) = lower.strip_suffix("nyquist") {
        (n, true)
    } else {
        (lower.strip_suffix('a').unwrap_or(&lower), false)
    };
    let v: f64 = number.trim().parse().map_err(|_| bad())?;
    if !(v > 0.0 && v.is_finite()) || (nyquist && v > 1.0) {
        return Err(bad());
    }
    Ok(if nyquist {
        Cutoff::Nyquist(v)
    } else {
        Cutoff::Angstrom(v)
    })
}

pub fn parse_edge(s: &str) -> Result<EdgePolicy, Error> {
    match s {
        "skip" => Ok(EdgePolicy::Skip),
        "pad-mean" | "mean" => Ok(EdgePolicy::PadMean),
        "pad-noise" | "noise" => Ok(EdgePolicy::PadNoise),
        _ => Err(Error::Config(format!(
            "edge policy `{s}`: expected skip, pad-mean or pad-noise"
        ))),
    }
}

/// The extraction pipeline model.json describes.
pub fn pipeline(pre: &Preprocessing, threads: usize, seed: u64) -> Result<Pipeline, Error> {
    let cfg = ExtractConfig {
        box_size: pre.box_size,
        out_size: pre.input_size,
        edge: parse_edge(&pre.edge)?,
        norm: match pre.particle_radius {
            Some(radius) => ParticleNorm::Relion { radius },
            None => ParticleNorm::None,
        },
        invert: pre.invert,
        seed,
    };
    let mut p = Pipeline::new(cfg, threads);
    p.norm = parse_normalize(&pre.normalize)?;
    p.lowpass = pre.lowpass.as_deref().map(parse_lowpass).transpose()?;
    p.angpix = pre.angpix;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_spellings() {
        assert_eq!(
            parse_normalize("robust").unwrap(),
            MicrographNorm::Robust {
                low: 0.5,
                high: 99.5
            }
        );
        assert_eq!(
            parse_normalize("robust:1,99").unwrap(),
            MicrographNorm::Robust {
                low: 1.0,
                high: 99.0
            }
        );
        assert!(parse_normalize("robust:99,1").is_err() && parse_normalize("zscore").is_err());
        assert_eq!(parse_lowpass("20A").unwrap(), Cutoff::Angstrom(20.0));
        assert_eq!(parse_lowpass("15").unwrap(), Cutoff::Angstrom(15.0));
        assert_eq!(parse_lowpass("0.5nyquist").unwrap(), Cutoff::Nyquist(0.5));
        assert!(parse_lowpass("2nyquist").is_err() && parse_lowpass("-3A").is_err());
        assert!(parse_edge("noise").is_ok() && parse_edge("wrap").is_err());
    }
}

//! One spelling for each preprocessing setting, on the command line, in configs and in
//! model.json: `FromStr` and `Display` agree, and serde goes through them.

use std::fmt;
use std::str::FromStr;

use crate::extract::EdgePolicy;
use crate::fourier::Cutoff;
use crate::normalize::MicrographNorm;

/// Implements serde's `Serialize`/`Deserialize` for a type through its `Display`/`FromStr`, so
/// a setting has one spelling on the command line, in configs and in files. The crate using it
/// needs `serde` among its dependencies.
#[macro_export]
macro_rules! serde_as_text {
    ($t:ty) => {
        impl ::serde::Serialize for $t {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> ::serde::Deserialize<'de> for $t {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <String as ::serde::Deserialize>::deserialize(d)?
                    .parse()
                    .map_err(::serde::de::Error::custom)
            }
        }
    };
}

impl MicrographNorm {
    /// Clip to the 0.5 and 99.5 percentiles, then mean/std: `robust`.
    pub const ROBUST: MicrographNorm = MicrographNorm::Robust {
        low: 0.5,
        high: 99.5,
    };
}

/// `none`, `meanstd`, `robust` or `robust:LOW,HIGH` (percentiles).
impl FromStr for MicrographNorm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("normalisation `{s}`: expected none, meanstd or robust:LOW,HIGH");
        match s {
            "none" => return Ok(MicrographNorm::None),
            "meanstd" => return Ok(MicrographNorm::MeanStd),
            "robust" => return Ok(MicrographNorm::ROBUST),
            _ => {}
        }
        let (a, b) = s
            .strip_prefix("robust:")
            .and_then(|r| r.split_once(','))
            .ok_or_else(bad)?;
        let low: f64 = a.trim().parse().map_err(|_| bad())?;
        let high: f64 = b.trim().parse().map_err(|_| bad())?;
        if !(0.0..=100.0).contains(&low) || !(0.0..=100.0).contains(&high) || low >= high {
            return Err(bad());
        }
        Ok(MicrographNorm::Robust { low, high })
    }
}

impl fmt::Display for MicrographNorm {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match *self {
            MicrographNorm::None => f.write_str("none"),
            MicrographNorm::MeanStd => f.write_str("meanstd"),
            n if n == MicrographNorm::ROBUST => f.write_str("robust"),
            MicrographNorm::Robust { low, high } => write!(f, "robust:{low},{high}"),
        }
    }
}
crate::serde_as_text!(MicrographNorm);

/// `20A` (a resolution in Å) or `0.5nyquist`; a bare number is Å.
impl FromStr for Cutoff {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("low-pass `{s}`: expected a resolution like 20A or a fraction like 0.5nyquist")
        };
        let lower = s.trim().to_ascii_lowercase();
        let (number, nyquist) = match lower.strip_suffix("nyquist") {
            Some(n) => (n, true),
            None => (lower.strip_suffix('a').unwrap_or(&lower), false),
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
}

impl fmt::Display for Cutoff {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Cutoff::Angstrom(a) => write!(f, "{a}A"),
            Cutoff::Nyquist(n) => write!(f, "{n}nyquist"),
        }
    }
}
crate::serde_as_text!(Cutoff);

/// `skip`, `pad-mean` or `pad-noise`; `mean` and `noise` are the older spellings of `extract`.
impl FromStr for EdgePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "skip" => Ok(EdgePolicy::Skip),
            "pad-mean" | "mean" => Ok(EdgePolicy::PadMean),
            "pad-noise" | "noise" => Ok(EdgePolicy::PadNoise),
            "pad-edge" => Ok(EdgePolicy::PadEdge),
            _ => Err(format!(
                "edge policy `{s}`: expected skip, pad-mean, pad-noise or pad-edge"
            )),
        }
    }
}

impl fmt::Display for EdgePolicy {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            EdgePolicy::Skip => "skip",
            EdgePolicy::PadMean => "pad-mean",
            EdgePolicy::PadNoise => "pad-noise",
            EdgePolicy::PadEdge => "pad-edge",
        })
    }
}
crate::serde_as_text!(EdgePolicy);

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    fn round_trip<T>(s: &str) -> String
    where
        T: FromStr<Err = String>
            + fmt::Display
            + Serialize
            + for<'de> Deserialize<'de>
            + PartialEq
            + fmt::Debug,
    {
        let v: T = s.parse().unwrap();
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(serde_json::from_str::<T>(&json).unwrap(), v);
        assert_eq!(json, format!("\"{v}\""));
        v.to_string()
    }

    #[test]
    fn every_setting_reads_back_what_it_writes() {
        assert_eq!(round_trip::<MicrographNorm>("robust"), "robust");
        assert_eq!(round_trip::<MicrographNorm>("robust:1,99"), "robust:1,99");
        assert_eq!(round_trip::<MicrographNorm>("none"), "none");
        assert_eq!(round_trip::<MicrographNorm>("meanstd"), "meanstd");
        assert_eq!(round_trip::<Cutoff>("20A"), "20A");
        assert_eq!(round_trip::<Cutoff>("15"), "15A");
        assert_eq!(round_trip::<Cutoff>("0.5nyquist"), "0.5nyquist");
        assert_eq!(round_trip::<EdgePolicy>("noise"), "pad-noise");
        assert_eq!(round_trip::<EdgePolicy>("pad-mean"), "pad-mean");
        assert_eq!(round_trip::<EdgePolicy>("skip"), "skip");
        assert_eq!(round_trip::<EdgePolicy>("pad-edge"), "pad-edge");
    }

    #[test]
    fn bad_spellings_are_refused_with_the_expected_ones() {
        assert!("robust:99,1".parse::<MicrographNorm>().is_err());
        assert!("zscore".parse::<MicrographNorm>().is_err());
        assert!("robust:1".parse::<MicrographNorm>().is_err());
        assert!("2nyquist".parse::<Cutoff>().is_err());
        assert!("-3A".parse::<Cutoff>().is_err());
        let e = "wrap".parse::<EdgePolicy>().unwrap_err();
        assert!(e.contains("pad-noise"), "{e}");
    }
}

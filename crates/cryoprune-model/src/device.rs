//! `--device cpu|cuda[:N]|wgpu`: the compute device, chosen at run time among the backends this
//! build was compiled with. A device that was asked for and cannot work is an error, never a
//! quiet fall-back to the CPU: a user who asked for the GPU must know they did not get it.

use std::panic::{catch_unwind, AssertUnwindSafe};

use burn::tensor::{Device, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown device '{0}'; expected cpu, cuda, cuda:N or wgpu")]
    Unknown(String),
    #[error(
        "device '{0}' needs a build with the `{1}` feature: cargo install --path crates/cryoprune --features {1}"
    )]
    NotBuilt(String, &'static str),
    #[error("device '{0}' did not start: {1}")]
    Failed(String, String),
}

/// A device and the words that name it in logs.
#[derive(Debug, Clone)]
pub struct Compute {
    pub device: Device,
    pub description: String,
}

/// Parses a `--device` value and checks that the device really runs a tensor operation.
pub fn select(spec: &str) -> Result<Compute, DeviceError> {
    let lower = spec.trim().to_ascii_lowercase();
    let (kind, index) = match lower.split_once(':') {
        Some((k, i)) => {
            let i: usize = i.parse().map_err(|_| DeviceError::Unknown(spec.into()))?;
            (k.to_string(), Some(i))
        }
        None => (lower.clone(), None),
    };
    let compute = match (kind.as_str(), index) {
        ("cpu", None) => Compute {
            device: Device::flex(),
            description: format!(
                "cpu (burn flex backend, {} threads)",
                rayon::current_num_threads()
            ),
        },
        ("cuda", index) => cuda(spec, index.unwrap_or(0))?,
        ("wgpu", None) => wgpu(spec)?,
        _ => return Err(DeviceError::Unknown(spec.into())),
    };
    probe(&compute, spec)?;
    Ok(compute)
}

#[cfg(feature = "cuda")]
fn cuda(_spec: &str, index: usize) -> Result<Compute, DeviceError> {
    Ok(Compute {
        device: Device::cuda(index),
        description: format!("cuda:{index} (burn cuda backend)"),
    })
}

#[cfg(all(feature = "tch", not(feature = "cuda")))]
fn cuda(_spec: &str, index: usize) -> Result<Compute, DeviceError> {
    Ok(Compute {
        device: Device::libtorch_cuda(index),
        description: format!("cuda:{index} (burn libtorch backend)"),
    })
}

#[cfg(not(any(feature = "cuda", feature = "tch")))]
fn cuda(spec: &str, _index: usize) -> Result<Compute, DeviceError> {
    Err(DeviceError::NotBuilt(spec.into(), "cuda"))
}

#[cfg(feature = "wgpu")]
fn wgpu(_spec: &str) -> Result<Compute, DeviceError> {
    Ok(Compute {
        device: Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        description: "wgpu default adapter (burn wgpu backend)".into(),
    })
}

#[cfg(not(feature = "wgpu"))]
fn wgpu(spec: &str) -> Result<Compute, DeviceError> {
    Err(DeviceError::NotBuilt(spec.into(), "wgpu"))
}

/// Backends panic when a driver or GPU is missing; turn that into an error at selection time
/// rather than in the middle of a training run.
fn probe(compute: &Compute, spec: &str) -> Result<(), DeviceError> {
    let device = compute.device.clone();
    let outcome = catch_unwind(AssertUnwindSafe(move || {
        Tensor::<1>::ones([4], &device).sum().into_scalar::<f32>()
    }));
    match outcome {
        Ok(4.0) => Ok(()),
        Ok(v) => Err(DeviceError::Failed(
            spec.into(),
            format!("a test sum gave {v}, not 4"),
        )),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the backend panicked".into());
            Err(DeviceError::Failed(spec.into(), message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_always_there_and_named() {
        let c = select("cpu").unwrap();
        assert!(c.description.starts_with("cpu"));
        assert!(select("CPU").is_ok());
    }

    #[test]
    fn unknown_or_unbuilt_devices_are_errors() {
        assert!(matches!(select("tpu"), Err(DeviceError::Unknown(_))));
        assert!(matches!(select("cuda:x"), Err(DeviceError::Unknown(_))));
        #[cfg(not(any(feature = "cuda", feature = "tch")))]
        assert!(matches!(
            select("cuda:1"),
            Err(DeviceError::NotBuilt(_, "cuda"))
        ));
        #[cfg(not(feature = "wgpu"))]
        assert!(matches!(
            select("wgpu"),
            Err(DeviceError::NotBuilt(_, "wgpu"))
        ));
    }
}

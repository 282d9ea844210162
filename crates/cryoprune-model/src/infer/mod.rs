//! Running a trained classifier. On the CPU, cryoprune does not run burn's layers one by one:
//! inference there is a few large convolutions whose cost burn's generic CPU backend multiplies
//! by converting layouts, allocating per tile and making a separate pass over memory for every
//! batch norm, activation and residual sum (measured: 0.3-0.5× PyTorch's speed). [`FusedNet`]
//! folds each batch norm into its convolution, applies activations as outputs are written, and
//! runs whole images per core. On a GPU burn's own kernels run, through [`Predictor::Burn`].
//! Both give the same probabilities (the tests compare them on every architecture).

pub(crate) mod conv;
pub(crate) mod net;
pub(crate) mod pool;

use burn::tensor::{Device, Tensor, TensorData};

use crate::classifier::Classifier;
use crate::head::Readout;
pub use net::FusedNet;

/// Runs `f` compiled for the widest vector instructions this CPU has (AVX-512, else AVX2 with
/// FMA): the crates are built for baseline x86-64, whose SSE2 leaves the element-wise passes
/// (batch norm, masks, sums) four floats wide and converts to f64 one value at a time. `f` is
/// inlined into a copy of this function compiled with those features, chosen at run time;
/// results are the same bit for bit on any of them (no sum changes its order).
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
        unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512dq")
        {
            // SAFETY: the CPU has the features the copy is compiled for.
            return unsafe { avx512(f) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// A batch's feature maps, channel-major: [c, n, h, w] row-major. Keeping all images of a channel
/// together lets one matrix product cover the whole batch, so each weight is read once per tile
/// of pixels rather than once per image (which dominated deep layers with small maps).
#[derive(Debug, Clone)]
pub struct Maps {
    pub c: usize,
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub data: Vec<f32>,
}

impl Maps {
    pub fn zeros(c: usize, n: usize, h: usize, w: usize) -> Self {
        Self {
            c,
            n,
            h,
            w,
            data: vec![0.0; c * n * h * w],
        }
    }

    /// Images, each [channels, size, size], into channel-major maps.
    pub fn stack(images: &[&[f32]], channels: usize, size: usize) -> Self {
        let plane = size * size;
        let mut x = Self::zeros(channels, images.len(), size, size);
        for (b, img) in images.iter().enumerate() {
            assert_eq!(img.len(), channels * plane, "image size");
            for c in 0..channels {
                let dst = (c * images.len() + b) * plane;
                x.data[dst..dst + plane].copy_from_slice(&img[c * plane..(c + 1) * plane]);
            }
        }
        x
    }

    /// Elements of one channel over the whole batch.
    pub fn plane_all(&self) -> usize {
        self.n * self.h * self.w
    }
}

/// Planes per image of `images`, each some planes of `size` × `size`.
pub fn planes(images: &[&[f32]], size: usize) -> usize {
    images.first().map_or(1, |i| i.len() / (size * size).max(1))
}

/// Stacks `size` × `size` images (each of one or more planes) into a [N, planes, size, size]
/// tensor on `device`.
pub fn batch_tensor(images: &[&[f32]], size: usize, device: &Device) -> Tensor<4> {
    let flat: Vec<f32> = images.concat();
    let c = planes(images, size);
    Tensor::from_data(TensorData::new(flat, [images.len(), c, size, size]), device)
}

/// A classifier ready to score batches of images on its device.
// One predictor exists per run, so the size gap between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Predictor<'a> {
    /// The CPU path.
    Fused(FusedNet),
    /// Any other device: burn's kernels.
    Burn {
        model: &'a Classifier,
        device: Device,
    },
}

impl<'a> Predictor<'a> {
    pub fn new(model: &'a Classifier, device: &Device) -> Self {
        if *device == Device::flex() {
            Self::Fused(FusedNet::new(model))
        } else {
            Self::Burn {
                model,
                device: device.clone(),
            }
        }
    }

    /// Probabilities, `images.len()` rows of the class count, flattened. Each image holds as
    /// many planes of `size` × `size` as the network has input channels.
    pub fn probabilities(&self, images: &[&[f32]], size: usize, readout: Readout) -> Vec<f32> {
        match self {
            Self::Fused(net) => net.probabilities(images, planes(images, size), size, readout),
            Self::Burn { model, device } => model
                .probabilities(batch_tensor(images, size, device), readout)
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("converted to f32"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::{Arch, ClassifierConfig};
    use crate::head::HeadConfig;

    #[test]
    fn the_cpu_runs_fused_even_after_training_on_an_autodiff_device() {
        let device = Device::flex();
        let model = ClassifierConfig {
            in_channels: 1,
            arch: Arch::Small,
            classes: 2,
            head: HeadConfig::new(2),
        }
        .init(&device);
        // The trainer validates on its autodiff device with autodiff taken off again.
        let validation = device.clone().autodiff().without_autodiff();
        assert!(matches!(
            Predictor::new(&model, &validation),
            Predictor::Fused(_)
        ));
        let image = vec![0.5f32; 16 * 16];
        let p = Predictor::new(&model, &device).probabilities(
            &[&image, &image],
            16,
            Readout::single_label(true),
        );
        assert_eq!(p.len(), 4);
        assert!((p[0] + p[1] - 1.0).abs() < 1e-6 && p[..2] == p[2..]);
    }
}

//! The PickerOptimizer multi-loss head. Branch 1 is the usual classifier (global average pool,
//! fully connected); branch 2 first halves the channels with a 1×1 convolution; branch 3 goes
//! through two 1×1 convolutions down to 128 channels. Each branch sees the same features through
//! a different bottleneck, so their losses pull the backbone in slightly different directions,
//! which regularises fine-tuning on a handful of examples.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::{relu, sigmoid, softmax};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::layers::{global_pool, ConvBn, ConvBnConfig};

/// Shape of the head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadConfig {
    /// 1, 2 or 3 branches. Default 2 (the paper's).
    pub branches: usize,
    /// Loss weight of each branch. Default: 1 for the main branch, 0.5 for each other, which keeps
    /// the summed loss the order of magnitude of one cross-entropy.
    pub branch_weights: Vec<f32>,
    /// Predict with the mean of the branches' probabilities instead of branch 1 alone.
    pub mean_of_branches: bool,
    /// Any number of labels per image: one sigmoid per label, trained with binary
    /// cross-entropy, instead of one softmax over the classes. Models saved before multi-label
    /// training existed are single-label.
    #[serde(default)]
    pub multi_label: bool,
}

/// How the head's logits become the probabilities a model outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readout {
    /// The mean of every branch's probabilities instead of branch 1's alone.
    pub mean_of_branches: bool,
    /// An independent probability per label (sigmoid) instead of one distribution over the
    /// classes (softmax).
    pub multi_label: bool,
}

impl Readout {
    /// One class per image, from branch 1 or the mean of the branches.
    pub const fn single_label(mean_of_branches: bool) -> Readout {
        Readout {
            mean_of_branches,
            multi_label: false,
        }
    }

    /// The probabilities of one image's logits, in place.
    pub fn activate(&self, logits: &mut [f32]) {
        if self.multi_label {
            logits
                .iter_mut()
                .for_each(|l| *l = 1.0 / (1.0 + (-*l).exp()));
            return;
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        logits.iter_mut().for_each(|l| *l = (*l - max).exp());
        let sum: f32 = logits.iter().sum();
        logits.iter_mut().for_each(|l| *l /= sum);
    }
}

impl Default for HeadConfig {
    fn default() -> Self {
        Self::new(2)
    }
}

impl HeadConfig {
    pub fn new(branches: usize) -> Self {
        let branch_weights = (0..branches)
            .map(|i| if i == 0 { 1.0 } else { 0.5 })
            .collect();
        Self {
            branches,
            branch_weights,
            mean_of_branches: false,
            multi_label: false,
        }
    }

    pub fn readout(&self) -> Readout {
        Readout {
            mean_of_branches: self.mean_of_branches,
            multi_label: self.multi_label,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(1..=3).contains(&self.branches) {
            return Err(format!(
                "the head has 1, 2 or 3 branches, not {}",
                self.branches
            ));
        }
        if self.branch_weights.len() != self.branches {
            return Err(format!(
                "{} branch weights given for {} branches",
                self.branch_weights.len(),
                self.branches
            ));
        }
        if self
            .branch_weights
            .iter()
            .any(|w| !w.is_finite() || *w < 0.0)
        {
            return Err("branch weights must be finite and non-negative".into());
        }
        Ok(())
    }
}

#[derive(Module, Debug)]
pub struct Head {
    /// Branch 1: pool -> fc.
    pub fc: Linear,
    /// Branch 2: 1×1 conv to C/2 -> pool -> fc.
    pub reduce2: Option<ConvBn>,
    pub fc2: Option<Linear>,
    /// Branch 3: 1×1 conv to C/2, 1×1 conv to 128 -> pool -> fc.
    pub reduce3a: Option<ConvBn>,
    pub reduce3b: Option<ConvBn>,
    pub fc3: Option<Linear>,
}

impl Head {
    pub fn new(channels: usize, classes: usize, branches: usize, device: &Device) -> Self {
        let half = (channels / 2).max(1);
        let two = branches >= 2;
        let three = branches >= 3;
        Self {
            fc: LinearConfig::new(channels, classes).init(device),
            reduce2: two.then(|| ConvBnConfig::new(channels, half, 1, 1).init(device)),
            fc2: two.then(|| LinearConfig::new(half, classes).init(device)),
            reduce3a: three.then(|| ConvBnConfig::new(channels, half, 1, 1).init(device)),
            reduce3b: three.then(|| ConvBnConfig::new(half, 128, 1, 1).init(device)),
            fc3: three.then(|| LinearConfig::new(128, classes).init(device)),
        }
    }

    /// Logits of every branch, main branch first.
    pub fn forward(&self, features: Tensor<4>) -> Vec<Tensor<2>> {
        let mut out = vec![self.fc.forward(global_pool(features.clone()))];
        if let (Some(reduce), Some(fc)) = (&self.reduce2, &self.fc2) {
            let x = relu(reduce.forward(features.clone()));
            out.push(fc.forward(global_pool(x)));
        }
        if let (Some(a), Some(b), Some(fc)) = (&self.reduce3a, &self.reduce3b, &self.fc3) {
            let x = relu(b.forward(relu(a.forward(features))));
            out.push(fc.forward(global_pool(x)));
        }
        out
    }

    /// Probabilities [N, classes]: the main branch's, or the mean of all branches'.
    pub fn probabilities(&self, features: Tensor<4>, readout: Readout) -> Tensor<2> {
        let activate = |l: Tensor<2>| {
            if readout.multi_label {
                sigmoid(l)
            } else {
                softmax(l, 1)
            }
        };
        let logits = self.forward(features);
        if !readout.mean_of_branches {
            return activate(logits.into_iter().next().expect("head has a branch"));
        }
        let n = logits.len() as f64;
        logits
            .into_iter()
            .map(activate)
            .reduce(|a, b| a + b)
            .expect("head has a branch")
            .div_scalar(n)
    }
}

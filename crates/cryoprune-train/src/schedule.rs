//! Learning-rate schedules, evaluated per iteration so that one-cycle and exponential decay are
//! smooth and the paper's step decay falls exactly on epoch boundaries.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Schedule {
    /// `initial × gamma^(epoch / every)`: the PickerOptimizer default (×0.1 every 7 epochs).
    Step {
        initial: f64,
        every: usize,
        gamma: f64,
    },
    /// Linear warm-up over the first 30% from `initial/25` to `initial`, then cosine annealing
    /// to `final_lr` (seed 003's one-cycle).
    OneCycle { initial: f64, final_lr: f64 },
    /// Geometric decay from `initial` to `final_lr` over the run (cryoSPARC's initial/final rate).
    Exp { initial: f64, final_lr: f64 },
}

impl Schedule {
    /// Rate at iteration `it` of `total` (iterations over the whole run), in epoch `epoch`.
    pub fn rate(&self, epoch: usize, it: usize, total: usize) -> f64 {
        let t = if total > 1 {
            it as f64 / (total - 1) as f64
        } else {
            0.0
        };
        match *self {
            Schedule::Step {
                initial,
                every,
                gamma,
            } => initial * gamma.powi((epoch / every.max(1)) as i32),
            Schedule::OneCycle { initial, final_lr } => {
                let warm = 0.3;
                if t < warm {
                    let start = initial / 25.0;
                    start + (initial - start) * t / warm
                } else {
                    let u = (t - warm) / (1.0 - warm);
                    final_lr + (initial - final_lr) * 0.5 * (1.0 + (std::f64::consts::PI * u).cos())
                }
            }
            Schedule::Exp { initial, final_lr } => initial * (final_lr / initial).powf(t),
        }
    }

    pub fn initial(&self) -> f64 {
        match *self {
            Schedule::Step { initial, .. }
            | Schedule::OneCycle { initial, .. }
            | Schedule::Exp { initial, .. } => initial,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_decays_on_epoch_boundaries() {
        let s = Schedule::Step {
            initial: 0.01,
            every: 7,
            gamma: 0.1,
        };
        assert_eq!(s.rate(6, 0, 10), 0.01);
        assert!((s.rate(7, 0, 10) - 0.001).abs() < 1e-15);
        assert!((s.rate(29, 0, 10) - 1e-6).abs() < 1e-18);
    }

    #[test]
    fn onecycle_and_exp_reach_their_ends() {
        let s = Schedule::OneCycle {
            initial: 0.1,
            final_lr: 1e-4,
        };
        assert!((s.rate(0, 0, 101) - 0.004).abs() < 1e-12);
        assert!((s.rate(0, 30, 101) - 0.1).abs() < 1e-12);
        assert!((s.rate(0, 100, 101) - 1e-4).abs() < 1e-12);
        let e = Schedule::Exp {
            initial: 0.1,
            final_lr: 0.001,
        };
        assert!((e.rate(0, 50, 101) - 0.01).abs() < 1e-12);
        assert!((e.rate(0, 100, 101) - 0.001).abs() < 1e-12);
    }
}

//! Classifying every pick of a dataset: micrographs are read and particles cut by the
//! extraction workers while the network runs on full batches on the calling thread.
//!
//! The extraction pipeline lets its workers run only a few micrographs ahead of the network, and
//! at most one batch plus one micrograph's particles wait here, so memory stays flat however many
//! micrographs and picks there are. Results come back per micrograph, in job order, as soon as
//! the last of its particles has been through the network, so a caller can write each
//! micrograph's output (or count progress) while the run goes on.

use burn::tensor::Device;
use cryoprune_image::pipeline::{Job, Pipeline};
use cryoprune_model::{Classifier, Predictor, Readout};

use crate::Error;

/// Why a pick has no probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Unscored {
    /// Its centre is not on the micrograph.
    Outside,
    /// Its box reaches past the edge and the model's edge policy is `skip`.
    Edge,
}

/// One micrograph's results: per pick (in the job's order) the class probabilities, or why
/// there are none.
#[derive(Debug, Clone)]
pub struct MicrographResult {
    pub index: usize,
    pub shape: (usize, usize),
    pub probs: Vec<Result<Vec<f32>, Unscored>>,
}

/// A particle waiting for the network.
struct Waiting {
    job: usize,
    pick: usize,
}

struct Open {
    index: usize,
    shape: (usize, usize),
    probs: Vec<Result<Vec<f32>, Unscored>>,
    remaining: usize,
}

/// Runs `model` over the picks of every job; `done` receives each micrograph's result in job
/// order. `batch` is the network's batch size; `classes` the model's class count. `done`'s
/// error type is the caller's, so a failed write comes back as itself.
#[allow(clippy::too_many_arguments)]
pub fn classify_jobs<E: From<Error> + From<cryoprune_image::Error>>(
    model: &Classifier,
    classes: usize,
    readout: Readout,
    pipeline: &Pipeline,
    jobs: &[Job],
    batch: usize,
    device: &Device,
    mut done: impl FnMut(MicrographResult) -> Result<(), E>,
) -> Result<(), E> {
    let size = pipeline.extract.out_size;
    let pixels = size * size;
    let predictor = Predictor::new(model, device);
    let batch = batch.max(1);
    let mut images: Vec<f32> = Vec::with_capacity(2 * batch * pixels);
    let mut waiting: Vec<Waiting> = Vec::with_capacity(2 * batch);
    // Micrographs with particles still in `waiting`, oldest first.
    let mut open: std::collections::VecDeque<Open> = Default::default();
    let mut run_network = |images: &mut Vec<f32>,
                           waiting: &mut Vec<Waiting>,
                           open: &mut std::collections::VecDeque<Open>,
                           n: usize|
     -> Result<(), E> {
        if n > 0 {
            let views: Vec<&[f32]> = images[..n * pixels].chunks_exact(pixels).collect();
            let values = predictor.probabilities(&views, size, readout);
            let first = open.front().map_or(0, |o| o.index);
            for (w, row) in waiting.drain(..n).zip(values.chunks_exact(classes)) {
                let o = &mut open[w.job - first];
                o.probs[w.pick] = Ok(row.to_vec());
                o.remaining -= 1;
            }
            images.drain(..n * pixels);
        }
        while open.front().is_some_and(|o| o.remaining == 0) {
            let o = open.pop_front().expect("checked");
            done(MicrographResult {
                index: o.index,
                shape: o.shape,
                probs: o.probs,
            })?;
        }
        Ok(())
    };

    pipeline.run(jobs, |out| -> Result<(), E> {
        let picks = jobs[out.index].picks.len();
        let mut probs = vec![Err(Unscored::Outside); picks];
        for &i in &out.particles.skipped_edge {
            probs[i] = Err(Unscored::Edge);
        }
        for &pick in &out.particles.kept {
            waiting.push(Waiting {
                job: out.index,
                pick,
            });
        }
        images.extend_from_slice(&out.particles.data);
        open.push_back(Open {
            index: out.index,
            shape: out.shape,
            probs,
            remaining: out.particles.kept.len(),
        });
        let full = waiting.len() / batch * batch;
        run_network(&mut images, &mut waiting, &mut open, full)
    })?;
    let rest = waiting.len();
    run_network(&mut images, &mut waiting, &mut open, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryoprune_formats::mrc::{write_mrc, Mode, WriteKind};
    use cryoprune_image::extract::{EdgePolicy, ExtractConfig, ParticleNorm};
    use cryoprune_model::{Arch, ClassifierConfig, HeadConfig};

    use crate::dataset::Dataset;
    use crate::trainer::predict;

    /// Micrographs with a few bright dots, and picks on them (some near or past the edge).
    fn jobs(dir: &std::path::Path, n: usize) -> Vec<Job> {
        (0..n)
            .map(|i| {
                let (nx, ny) = (80, 72);
                let mut img = vec![0f32; nx * ny];
                for (k, v) in img.iter_mut().enumerate() {
                    *v = ((k * 31 + i * 7) % 17) as f32 / 17.0;
                }
                let path = dir.join(format!("m{i}.mrc"));
                write_mrc(
                    &path,
                    (nx, ny, 1),
                    &img,
                    Mode::Float32,
                    WriteKind::ImageOrStack,
                    None,
                )
                .unwrap();
                // Micrograph i has i % 4 + 1 picks, plus one outside and one at the edge.
                let mut picks: Vec<(f64, f64)> = (0..i % 4 + 1)
                    .map(|k| (20.0 + 9.0 * k as f64, 30.0 + i as f64))
                    .collect();
                picks.push((-5.0, 10.0));
                picks.push((2.0, 2.0));
                Job { path, picks }
            })
            .collect()
    }

    #[test]
    fn every_pick_gets_the_probabilities_a_plain_batch_gives() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = jobs(dir.path(), 9);
        let device = Device::default();
        let model = ClassifierConfig {
            in_channels: 1,
            arch: Arch::Small,
            classes: 3,
            head: HeadConfig::new(2),
        }
        .init(&device);
        let cfg = ExtractConfig {
            edge: EdgePolicy::Skip,
            norm: ParticleNorm::None,
            ..ExtractConfig::new(16)
        };
        let pipeline = Pipeline::new(cfg, 2);
        let mut results = Vec::new();
        // A batch of 4 splits micrographs across batches and leaves a remainder at the end.
        classify_jobs(
            &model,
            3,
            Readout::single_label(false),
            &pipeline,
            &jobs,
            4,
            &device,
            |r| -> Result<(), Error> {
                results.push(r);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(
            results.iter().map(|r| r.index).collect::<Vec<_>>(),
            (0..9).collect::<Vec<_>>()
        );
        // The same particles cut one micrograph at a time and scored in one batch.
        let mut data = Dataset::empty(16, vec!["a".into(), "b".into(), "c".into()]);
        pipeline
            .run(&jobs, |out| -> Result<(), Error> {
                data.images.extend_from_slice(&out.particles.data);
                data.labels.extend(out.particles.kept.iter().map(|_| 0));
                data.origins
                    .extend(out.particles.kept.iter().map(|&k| crate::Origin {
                        micrograph: out.index.to_string(),
                        x: k as f64,
                        y: 0.0,
                        score: None,
                        edge: None,
                    }));
                Ok(())
            })
            .unwrap();
        let expected = predict(&model, &data, 64, Readout::single_label(false), &device);
        let mut next = 0;
        for (r, job) in results.iter().zip(&jobs) {
            assert_eq!(r.shape, (80, 72));
            assert_eq!(r.probs.len(), job.picks.len());
            let n = job.picks.len();
            assert_eq!(r.probs[n - 2], Err(Unscored::Outside));
            assert_eq!(r.probs[n - 1], Err(Unscored::Edge));
            for p in &r.probs[..n - 2] {
                let p = p.as_ref().unwrap();
                for (a, b) in p.iter().zip(&expected[next]) {
                    assert!((a - b).abs() < 1e-5, "{a} vs {b}");
                }
                next += 1;
            }
        }
        assert_eq!(next, expected.len());
    }

    #[test]
    fn an_error_from_the_receiver_stops_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = jobs(dir.path(), 6);
        let device = Device::default();
        let model = ClassifierConfig {
            in_channels: 1,
            arch: Arch::Small,
            classes: 2,
            head: HeadConfig::new(1),
        }
        .init(&device);
        let pipeline = Pipeline::new(ExtractConfig::new(16), 1);
        let mut seen = 0;
        let err = classify_jobs(
            &model,
            2,
            Readout::single_label(false),
            &pipeline,
            &jobs,
            2,
            &device,
            |_| -> Result<(), Error> {
                seen += 1;
                if seen == 2 {
                    return Err(Error::Config("disk full".into()));
                }
                Ok(())
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(seen, 2);
    }
}

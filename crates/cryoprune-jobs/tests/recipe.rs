//! The training recipe in process, on a tiny synthetic problem: it trains what the config says,
//! the pick context it fits carries facts the image does not show, and jobs run on the threads
//! they asked for.

use cryoprune_jobs::events::{Collect, Event};
use cryoprune_jobs::recipe::{
    context_for, fit, with_context, NetConfig, Repeats, ScheduleKind, Start,
};
use cryoprune_jobs::ComputeConfig;
use cryoprune_train::{Dataset, Origin};
use rand::{Rng, SeedableRng};

/// Discs vs. rings on noise; the rings lie at the micrograph edge and score low, as junk does.
fn discs_and_rings(n_per_class: usize, size: usize, seed: u64) -> Dataset {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut images, mut labels, mut origins) = (Vec::new(), Vec::new(), Vec::new());
    let c = size as f32 / 2.0;
    for i in 0..2 * n_per_class {
        let class = i % 2;
        let r0 = rng.random_range(3.0..5.0f32);
        for y in 0..size {
            for x in 0..size {
                let r = ((x as f32 - c).powi(2) + (y as f32 - c).powi(2)).sqrt();
                let signal = match class {
                    0 => (r < r0) as u8 as f32,
                    _ => ((r - r0).abs() < 1.0) as u8 as f32,
                };
                images.push(signal + rng.random_range(-0.5..0.5f32));
            }
        }
        labels.push(class);
        origins.push(Origin {
            micrograph: format!("m{}", i % 3),
            x: i as f64,
            y: 0.0,
            score: Some(if class == 0 { 2.0 } else { -2.0 } + rng.random_range(-0.5..0.5)),
            edge: Some(if class == 0 { 1.0 } else { 0.1 }),
        });
    }
    Dataset {
        size,
        channels: 1,
        images,
        labels,
        origins,
        classes: vec!["disc".into(), "ring".into()],
        multi: None,
        exposure: Vec::new(),
    }
}

#[test]
fn the_recipe_trains_as_configured_and_the_context_is_combined() {
    let train = discs_and_rings(10, 16, 1);
    let val = discs_and_rings(10, 16, 2);
    let events = Collect::default();
    let compute = ComputeConfig {
        device: "cpu".into(),
        threads: 2,
    }
    .start(&events)
    .unwrap();
    let net = NetConfig {
        pretrained: "none".into(),
        epochs: 3,
        batch: 8,
        repeats: Repeats::Fixed(2),
        schedule: ScheduleKind::OneCycle,
        lr: 0.05,
        ..NetConfig::default()
    };
    let fitted = compute
        .install(&events, || {
            fit(
                &net,
                Start::Weights(None),
                &train,
                &val,
                4,
                &compute,
                &events,
            )
        })
        .unwrap();
    assert_eq!(fitted.history.len(), 3);
    assert_eq!(fitted.config.repeats, 2);
    assert_eq!(fitted.config.head.branches, 2);
    assert!((1..=3).contains(&fitted.best_epoch));
    let epochs = events
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Epoch(_)))
        .count();
    assert_eq!(epochs, 3, "every epoch is reported");

    let mut context =
        context_for(&train, &events).expect("score and edge both vary with the class");
    assert_eq!(context.facts().count(), 2);
    let image_only = fitted.score(&val, &compute);
    // The kept epoch's validation probabilities are what scoring the picks again gives; a set
    // holding the validation picks among others reuses them where they are.
    let kept = fitted.val_probs.as_ref().expect("validated every epoch");
    assert_eq!(kept.len(), val.len());
    for (a, b) in kept.iter().flatten().zip(image_only.probs.iter().flatten()) {
        assert!((a - b).abs() < 1e-5, "{a} against {b}");
    }
    let mixed = train.concat(&val);
    let at: Vec<usize> = (train.len()..mixed.len()).collect();
    let reused = fitted.score_reusing_validation(&mixed, &at, &compute);
    let fresh = fitted.score(&mixed, &compute);
    assert_eq!(reused.probs.len(), mixed.len());
    for (a, b) in reused
        .probs
        .iter()
        .flatten()
        .zip(fresh.probs.iter().flatten())
    {
        assert!((a - b).abs() < 1e-5, "{a} against {b}");
    }
    assert_eq!(reused.predicted, fresh.predicted);
    // As train does: the network is weighed against the context on the validation picks.
    let n = context.fit_weights(&image_only.probs, &val.facts(), &val.labels);
    assert_eq!(n, val.len());
    let combined = with_context(image_only, &val, Some(&context), &events).unwrap();
    // The facts alone separate the classes, so combined they decide whatever 3 epochs learnt.
    assert!(
        combined.report.macro_f1 > 0.95,
        "{}",
        combined.report.macro_f1
    );
    let notes: Vec<String> = events
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Note(n) => Some(n),
            _ => None,
        })
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("with the pick context")),
        "{notes:?}"
    );

    // Without the facts nothing can be fitted, and the reason is said.
    let mut bare = train.clone();
    for o in &mut bare.origins {
        o.score = None;
        o.edge = None;
    }
    let quiet = Collect::default();
    assert!(context_for(&bare, &quiet).is_none());
    assert!(quiet
        .events()
        .iter()
        .any(|e| matches!(e, Event::Note(n) if n.contains("image alone"))));
}

#[test]
fn a_second_job_in_the_process_gets_its_own_thread_count() {
    for threads in [1, 2, 3] {
        let events = Collect::default();
        let compute = ComputeConfig {
            device: "cpu".into(),
            threads,
        }
        .start(&events)
        .unwrap();
        let data = discs_and_rings(4, 16, threads as u64);
        let seen = compute.install(&events, || {
            let net = NetConfig {
                pretrained: "none".into(),
                epochs: 1,
                batch: 8,
                ..NetConfig::default()
            };
            fit(
                &net,
                Start::Weights(None),
                &data,
                &data,
                0,
                &compute,
                &events,
            )
            .unwrap();
            rayon::current_num_threads()
        });
        assert_eq!(seen, threads);
        assert!(events
            .events()
            .iter()
            .any(|e| matches!(e, Event::Threads(n) if *n == threads)));
    }
}

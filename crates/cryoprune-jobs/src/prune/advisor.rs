//! The threshold advisor: precision and recall at each threshold, from labelled picks the model
//! did not train on, at the prevalence of the picks being pruned.

use cryoprune_model::{Classifier, PickContext};
use cryoprune_train::modeldir::{ModelDir, ModelSpec};
use cryoprune_train::threshold::{self, Advice};

use super::decide::Rule;
use super::prior::Shift;
use super::PruneConfig;
use crate::compute::Compute;
use crate::events::Events;
use crate::labels::LabelsConfig;
use crate::recipe::score_labels;
use crate::Result;

/// The model and the decision the advice is about.
pub struct Judged<'a> {
    pub model: &'a Classifier,
    pub spec: &'a ModelSpec,
    pub context: Option<&'a PickContext>,
    pub rule: &'a Rule,
}

/// Labelled picks the model did not train on, scored as the run scores picks: the rates of the
/// threshold table and of the prior's estimate come from them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Labelled {
    /// Probability of the kept classes, before any prior shift.
    pub p_keep: Vec<f64>,
    pub is_kept: Vec<bool>,
    /// Where they came from, in words.
    pub from: String,
}

/// The picks of `cfg.labels` cut from the micrographs, else the validation picks the model
/// directory keeps; `None`, with a note saying why, when there are none or they lack a class.
pub fn labelled(
    cfg: &PruneConfig,
    judged: &Judged,
    compute: &Compute,
    events: &dyn Events,
) -> Result<Option<Labelled>> {
    let Judged {
        model,
        spec,
        context,
        rule,
    } = *judged;
    let found = if !cfg.labels.is_empty() {
        let labels = LabelsConfig {
            micrographs: cfg.micrographs.clone(),
            labels: cfg.labels.clone(),
            ..LabelsConfig::default()
        };
        let (data, scored) = score_labels(&labels, model, spec, context, compute, events)?;
        Labelled {
            p_keep: scored.probs.iter().map(|p| rule.p_keep(p)).collect(),
            is_kept: data.labels.iter().map(|l| rule.keep.contains(l)).collect(),
            from: "labels given with --labels".into(),
        }
    } else {
        let dir = ModelDir::new(&cfg.model);
        let Some(picks) = dir.validation(&spec.classes)?.filter(|p| !p.is_empty()) else {
            events.note(format!(
                "{} has no validation picks (validation.csv), so neither the threshold advisor nor the prior's \
                 estimate has labelled picks to go on; give --labels",
                cfg.model.display()
            ));
            return Ok(None);
        };
        Labelled {
            p_keep: picks.iter().map(|v| rule.p_keep(&v.probs)).collect(),
            is_kept: picks.iter().map(|v| rule.keep.contains(&v.label)).collect(),
            from: format!(
                "validation picks in {}",
                cfg.model.join("validation.csv").display()
            ),
        }
    };
    let positives = found.is_kept.iter().filter(|&&k| k).count();
    if positives == 0 || positives == found.is_kept.len() {
        events.note(format!(
            "the labelled picks ({}) need both kept and other classes to tell error rates",
            found.from
        ));
        return Ok(None);
    }
    Ok(Some(found))
}

/// The threshold table from `labelled`, with the probabilities moved by `shift` as the pruned
/// picks' were; `dataset_p` are the pruned picks' probabilities of being kept.
pub fn advise(
    cfg: &PruneConfig,
    labelled: &Labelled,
    shift: Option<&Shift>,
    dataset_p: &[f64],
) -> Advice {
    let p_keep: Vec<f64> = match shift {
        Some(s) => labelled.p_keep.iter().map(|&p| s.apply_keep(p)).collect(),
        None => labelled.p_keep.clone(),
    };
    let (prevalence, corrected) =
        threshold::estimate_prevalence(&p_keep, &labelled.is_kept, dataset_p);
    // Every pick outside its micrograph leaves nothing to count: say so, not that the count
    // gave the even share estimate_prevalence falls back to.
    let source = if dataset_p.is_empty() {
        "no pick was classified to count them on".to_string()
    } else if corrected {
        format!(
            "estimated from these picks' probabilities, corrected with the rates of the {}",
            labelled.from
        )
    } else {
        format!(
            "the share of these picks the model calls kept-class, not corrected: the rates of the \
             {} are too rough, or the model too weak, to correct it",
            labelled.from
        )
    };
    threshold::advise(
        &p_keep,
        &labelled.is_kept,
        prevalence,
        source,
        cfg.target_precision,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::ComputeConfig;
    use crate::events::Collect;
    use cryoprune_image::extract::EdgePolicy;
    use cryoprune_image::normalize::MicrographNorm;
    use cryoprune_model::{Arch, ClassifierConfig, HeadConfig};
    use cryoprune_train::modeldir::TrainingRecord;
    use cryoprune_train::prep::Preprocessing;

    #[test]
    fn the_advice_comes_from_the_model_directory_validation_picks() {
        let tmp = tempfile::tempdir().unwrap();
        let events = Collect::default();
        let compute = ComputeConfig {
            device: "cpu".into(),
            threads: 1,
        }
        .start(&events)
        .unwrap();
        let network = ClassifierConfig {
            in_channels: 1,
            arch: Arch::Small,
            classes: 2,
            head: HeadConfig::new(1),
        };
        let model = network.init(&compute.device.device);
        let spec = ModelSpec::new(
            vec!["junk".into(), "particle".into()],
            network,
            Preprocessing {
                box_size: 32,
                input_size: 16,
                normalize: MicrographNorm::None,
                lowpass: None,
                angpix: None,
                particle_radius: None,
                invert: false,
                edge: EdgePolicy::Skip,
                spectrum: false,
            },
            "none".into(),
            TrainingRecord::default(),
            None,
        );
        // Particles score 0.6-0.9, junk 0.1-0.4: every threshold between separates them.
        let mut csv = String::from("micrograph,x,y,label,predicted,p_junk,p_particle\n");
        for i in 0..8 {
            let p = 0.6 + 0.04 * i as f64;
            csv += &format!("m,{i},0,particle,particle,{:.2},{p:.2}\n", 1.0 - p);
            csv += &format!("m,{i},1,junk,junk,{p:.2},{:.2}\n", 1.0 - p);
        }
        std::fs::write(tmp.path().join("validation.csv"), csv).unwrap();
        let cfg = PruneConfig {
            model: tmp.path().to_path_buf(),
            ..PruneConfig::default()
        };
        let rule = Rule::new(&spec.classes, &[], None).unwrap();
        let judged = Judged {
            model: &model,
            spec: &spec,
            context: None,
            rule: &rule,
        };
        // The pruned picks are three quarters particles by their probabilities.
        let dataset_p = [0.9, 0.8, 0.7, 0.2];
        let found = labelled(&cfg, &judged, &compute, &events)
            .unwrap()
            .expect("both classes are labelled");
        let advice = advise(&cfg, &found, None, &dataset_p);
        assert_eq!((advice.positives, advice.negatives), (8, 8));
        assert!(
            (advice.prevalence - 0.75).abs() < 0.01,
            "{}",
            advice.prevalence
        );
        let best = advice
            .recommended
            .expect("a threshold reaches precision 0.95");
        assert!(
            best.precision >= 0.95 && best.true_positive_rate > 0.99,
            "{best:?}"
        );

        // With no pruned pick classified there is nothing to count, and the advice says so.
        let advice = advise(&cfg, &found, None, &[]);
        assert_eq!(advice.prevalence, 0.5);
        assert!(
            advice.prevalence_source.contains("no pick was classified"),
            "{}",
            advice.prevalence_source
        );

        // A folder without validation picks gives no advice, and says why.
        std::fs::remove_file(tmp.path().join("validation.csv")).unwrap();
        assert!(labelled(&cfg, &judged, &compute, &events)
            .unwrap()
            .is_none());
    }
}

//! The threshold advisor: precision and recall at each threshold, from labelled picks the model
//! did not train on, at the prevalence of the picks being pruned.

use cryoprune_model::{Classifier, PickContext};
use cryoprune_train::modeldir::{ModelDir, ModelSpec};
use cryoprune_train::threshold::{self, Advice};

use super::decide::Rule;
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

/// The threshold table from `cfg.labels` cut from the micrographs, else the validation picks
/// the model directory keeps; `dataset_p` are the pruned picks' probabilities of being kept.
pub fn advise(
    cfg: &PruneConfig,
    judged: &Judged,
    dataset_p: &[f64],
    compute: &Compute,
    events: &dyn Events,
) -> Result<Option<Advice>> {
    let Judged {
        model,
        spec,
        context,
        rule,
    } = *judged;
    let (p_keep, is_kept, from): (Vec<f64>, Vec<bool>, String) = if !cfg.labels.is_empty() {
        let labels = LabelsConfig {
            micrographs: cfg.micrographs.clone(),
            labels: cfg.labels.clone(),
            ..LabelsConfig::default()
        };
        let (data, scored) = score_labels(&labels, model, spec, context, compute, events)?;
        (
            scored.probs.iter().map(|p| rule.p_keep(p)).collect(),
            data.labels.iter().map(|l| rule.keep.contains(l)).collect(),
            "labels given with --labels".into(),
        )
    } else {
        let dir = ModelDir::new(&cfg.model);
        let Some(picks) = dir.validation(&spec.classes)? else {
            events.note(format!(
                "threshold advisor: {} has no validation.csv; give --labels",
                cfg.model.display()
            ));
            return Ok(None);
        };
        (
            picks.iter().map(|v| rule.p_keep(&v.probs)).collect(),
            picks.iter().map(|v| rule.keep.contains(&v.label)).collect(),
            format!(
                "validation picks in {}",
                cfg.model.join("validation.csv").display()
            ),
        )
    };
    let positives = is_kept.iter().filter(|&&k| k).count();
    if positives == 0 || positives == is_kept.len() {
        events.note(format!(
            "threshold advisor: the labelled picks ({from}) need both kept and other classes"
        ));
        return Ok(None);
    }
    let prevalence = threshold::estimate_prevalence(&p_keep, &is_kept, dataset_p);
    Ok(Some(threshold::advise(
        &p_keep,
        &is_kept,
        prevalence,
        format!(
            "estimated from these picks' probabilities, corrected with the rates of the {from}"
        ),
        cfg.target_precision,
    )))
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
        let advice = advise(&cfg, &judged, &dataset_p, &compute, &events)
            .unwrap()
            .expect("both classes are labelled");
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

        // A folder without validation picks gives no advice, and says why.
        std::fs::remove_file(tmp.path().join("validation.csv")).unwrap();
        assert!(advise(&cfg, &judged, &dataset_p, &compute, &events)
            .unwrap()
            .is_none());
    }
}

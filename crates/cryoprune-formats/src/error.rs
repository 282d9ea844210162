//! One error type for every reader and writer, so the CLI can print a single readable line that
//! names the file, the place in it and what was expected there.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where in a file a problem was found. Text formats report lines, binary formats byte offsets or
/// record (row / image) numbers; all are 1-based for lines and records, as a user counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Whole,
    Line(usize),
    Record(usize),
    Byte(u64),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Whole => Ok(()),
            Location::Line(n) => write!(f, "line {n}: "),
            Location::Record(n) => write!(f, "record {n}: "),
            Location::Byte(n) => write!(f, "byte {n}: "),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    // The cause is part of the message rather than a `source`, so a CLI printing the error
    // chain does not say it twice.
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file is not what its name or content claims, or is damaged.
    #[error("{}: {location}{message}", path.display())]
    Invalid {
        path: PathBuf,
        location: Location,
        message: String,
    },
    /// A valid file of a kind we deliberately do not handle (complex MRC modes, 3D .cbox, ...).
    #[error("{}: {message}", path.display())]
    Unsupported { path: PathBuf, message: String },
}

pub type Result<T> = std::result::Result<T, FormatError>;

/// Reads a whole text file; bytes that are not UTF-8 are an error at the line where they start,
/// saying what kind of text was `expected`.
pub fn read_utf8(path: &Path, expected: &str) -> Result<String> {
    ensure_regular(path)?;
    let mut bytes = std::fs::read(path).map_err(|e| FormatError::io(path, e))?;
    // Editors on Windows start UTF-8 files with a byte-order mark; it is no part of the text.
    const BOM: &[u8] = "\u{feff}".as_bytes();
    if bytes.starts_with(BOM) {
        bytes.drain(..BOM.len());
    }
    String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        FormatError::invalid(
            path,
            Location::Line(line),
            format!("not UTF-8 text; {expected}"),
        )
    })
}

/// Refuses anything but a regular file (after symlinks) as an input: reading a FIFO named
/// `picks.star` would block forever, and `/dev/zero` would never end.
pub fn ensure_regular(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| FormatError::io(path, e))?;
    if meta.is_file() {
        return Ok(());
    }
    let what = if meta.is_dir() {
        "a folder"
    } else {
        "not a regular file (a pipe, socket or device)"
    };
    Err(FormatError::invalid(
        path,
        Location::Whole,
        format!("{what}; expected a file to read"),
    ))
}

/// Opens `path` for reading once [`ensure_regular`] agrees.
pub fn open_regular(path: &Path) -> Result<std::fs::File> {
    ensure_regular(path)?;
    std::fs::File::open(path).map_err(|e| FormatError::io(path, e))
}

impl FormatError {
    pub fn io(path: &Path, error: std::io::Error) -> Self {
        FormatError::Io {
            path: path.to_path_buf(),
            error,
        }
    }

    pub fn invalid(path: &Path, location: Location, message: impl Into<String>) -> Self {
        FormatError::Invalid {
            path: path.to_path_buf(),
            location,
            message: message.into(),
        }
    }

    pub fn unsupported(path: &Path, message: impl Into<String>) -> Self {
        FormatError::Unsupported {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

//! Files in and out of cryoprune: micrographs, particle stacks and the coordinate files of every
//! common picker. No machine learning here; every later stage sees data only through this crate.

pub mod atomic;
pub mod cryosparc;
pub mod error;
pub mod micrograph;
pub mod mrc;
pub mod names;
pub mod npy;
pub mod picks;
pub mod star;

pub use error::{FormatError, Location, Result};
pub use micrograph::{micrograph_shape, read_micrograph, Micrograph};
pub use mrc::{MrcFile, MrcHeader, MrcWriter};
pub use picks::{Pick, PickFormat, PickSet, WriteOptions};
pub use star::StarFile;

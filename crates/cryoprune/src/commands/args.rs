//! The flags for the picks a command works on, shared by several commands. The other shared
//! flags are the library's own configs (`ComputeConfig`, `LabelsConfig`, `PrepConfig`,
//! `NetConfig`), flattened into each command.

use std::path::PathBuf;

use cryoprune_formats::PickFormat;

/// The picks a command works on and the micrographs they were made on.
#[derive(clap::Args, Debug, Clone)]
pub struct PickArgs {
    /// Micrographs the picks were made on (globs, quoted): MRC, TIFF, PNG or JPEG; or one list
    /// of them, a RELION micrographs STAR or cryoSPARC exposures .cs (or a cryoSPARC job folder
    /// with exposures).
    #[arg(long, required = true, num_args = 1..)]
    pub micrographs: Vec<String>,
    /// Pick files or folders of them, in one format (STAR, .cs, .box, .cbox, Topaz .txt, CSV);
    /// a RELION picking job's folder (or its autopick.star) reads as its coordinate files, a
    /// cryoSPARC job folder as its particle output with the passthrough joined.
    #[arg(long, required = true, num_args = 1..)]
    pub picks: Vec<PathBuf>,
    /// Pick format when the extension does not tell.
    #[arg(long)]
    pub format: Option<PickFormat>,
}

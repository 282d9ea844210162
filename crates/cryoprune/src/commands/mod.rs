//! One module per subcommand: argument parsing and one call into `cryoprune-jobs`. Each opens
//! with real usage examples that `--help` also shows.

pub mod args;
pub mod convert;
pub mod curate;
pub mod demo;
pub mod evaluate;
pub mod evaluate_picks;
pub mod extract;
pub mod fewshot;
pub mod info;
pub mod label;
pub mod merge;
pub mod pick;
pub mod picker;
pub mod pretrain;
pub mod prune;
pub mod relion;
pub mod simulate;
pub mod train;

/// The example commands of a subcommand, taken from the ```text block of its module's doc
/// comment so the source and `--help` can never disagree.
pub fn examples(source: &str) -> String {
    let mut out = String::from("Examples:\n");
    let mut inside = false;
    for line in source.lines().map_while(|l| l.strip_prefix("//!")) {
        let line = line.strip_prefix(' ').unwrap_or(line);
        if line.starts_with("```") {
            inside = !inside;
            continue;
        }
        if inside {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

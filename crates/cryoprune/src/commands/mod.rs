//! One module per subcommand; each opens with real usage examples that `--help` also shows.

pub mod convert;
pub mod demo;
pub mod evaluate;
pub mod extract;
pub mod fewshot;
pub mod info;
pub mod learning;
pub mod prune;
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
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The `--threads` convention of every command: 0 means all cores.
pub fn thread_count(requested: usize) -> usize {
    match requested {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// A progress bar on stderr with a rate and an ETA; drawn only when stderr is a terminal, so
/// logs and pipes stay clean.
pub fn progress_bar(len: u64, unit: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template(&format!(
        "{{bar:30}} {{pos}}/{{len}} {unit} {{msg}} [{{elapsed_precise}}, ETA {{eta}}]"
    ))
    .expect("the template is valid");
    bar.set_style(style);
    bar
}

/// Pairs pick groups with micrographs by name. Groups that match none are reported: the first
/// few by name, then a count, so a mismatched dataset does not flood the terminal.
pub fn pair_with_micrographs(
    set: &cryoprune_formats::PickSet,
    micrographs: &[std::path::PathBuf],
    consequence: &str,
) -> cryoprune_formats::names::MatchReport {
    const SHOWN: usize = 5;
    let names: Vec<String> = set
        .micrographs
        .iter()
        .map(|m| m.micrograph.clone())
        .collect();
    let report = cryoprune_formats::names::match_micrographs(&names, micrographs);
    let unmatched = &report.unmatched_picks;
    for name in unmatched.iter().take(SHOWN) {
        tracing::warn!(
            "picks for `{name}` match no micrograph given with --micrographs; {consequence}"
        );
    }
    if unmatched.len() > SHOWN {
        tracing::warn!(
            "... and {} more pick groups match no micrograph",
            unmatched.len() - SHOWN
        );
    }
    report
}

/// Expands shell-style globs (quoted so the shell leaves them to us, since a dataset can hold
/// more micrographs than a command line may) and plain paths, in sorted order.
pub fn expand_globs(patterns: &[String]) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for pat in patterns {
        let p = std::path::Path::new(pat);
        if p.exists() {
            out.push(p.to_path_buf());
            continue;
        }
        let mut matched: Vec<_> = glob::glob(pat)
            .map_err(|e| anyhow::anyhow!("bad pattern `{pat}`: {e}"))?
            .filter_map(|r| r.ok())
            .collect();
        if matched.is_empty() {
            anyhow::bail!("`{pat}` matches no file");
        }
        matched.sort();
        out.extend(matched);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_subcommand_documents_examples() {
        for src in [
            include_str!("info.rs"),
            include_str!("convert.rs"),
            include_str!("demo.rs"),
            include_str!("extract.rs"),
            include_str!("simulate.rs"),
            include_str!("prune.rs"),
            include_str!("train.rs"),
            include_str!("evaluate.rs"),
            include_str!("fewshot.rs"),
        ] {
            let ex = super::examples(src);
            let n = ex
                .lines()
                .filter(|l| l.trim_start().starts_with("cryoprune "))
                .count();
            assert!((2..=4).contains(&n), "{ex}");
        }
    }
}

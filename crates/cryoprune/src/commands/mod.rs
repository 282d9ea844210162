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
            out.push_str(&format!("  {}\n", continued(line, EXAMPLE_WIDTH)));
        }
    }
    out
}

/// Help is wrapped to the terminal by clap, which breaks a long command line anywhere, so a
/// pasted example would run without its last options; lines up to this width pass through.
const EXAMPLE_WIDTH: usize = 78;

/// A command line broken before its options into lines of at most `width` columns (after the
/// two-column indent), each but the last ending in a shell continuation, so that it still
/// pastes as one command. An option and its values stay on one line.
fn continued(command: &str, width: usize) -> String {
    // Breaks only outside quotes: inside them a continuation would become part of the value.
    let (mut parts, mut start, mut quote) = (vec![], 0, None);
    for (i, c) in command.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, ' ') if i > start && command[i..].starts_with(" --") => {
                parts.push(&command[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&command[start..]);
    let (indent, cont) = ("      ", " \\");
    let mut lines: Vec<String> = vec![];
    for part in parts {
        match lines.last_mut() {
            Some(l) if 2 + l.len() + 1 + part.len() + cont.len() <= width => {
                l.push(' ');
                l.push_str(part);
            }
            Some(_) => lines.push(format!("{indent}{part}")),
            None => lines.push(part.to_string()),
        }
    }
    lines.join(&format!("{cont}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_examples_break_before_options_and_paste_as_one_command() {
        let long = "cryoprune prune --model model/ --micrographs 'Micrographs/*.mrc' --picks \
                    autopick/ --out pruned/ --report report.html";
        let text = continued(long, 60);
        assert_eq!(
            text,
            "cryoprune prune --model model/ \\\n      --micrographs 'Micrographs/*.mrc' \\\n      \
             --picks autopick/ --out pruned/ \\\n      --report report.html"
        );
        assert_eq!(text.replace(" \\\n      ", " "), long);
        assert_eq!(continued("cryoprune demo", 60), "cryoprune demo");
        let quoted =
            "cryoprune relion prune --o External/job012/ --fn_exe 'cryoprune relion prune \
                      --model m/' --in_mics x.star";
        assert_eq!(
            continued(quoted, 50),
            "cryoprune relion prune --o External/job012/ \\\n      --fn_exe 'cryoprune relion \
             prune --model m/' \\\n      --in_mics x.star"
        );
    }

    /// Every subcommand's examples fit clap's widest help (100 columns), so clap never re-wraps
    /// them on a terminal that wide.
    #[test]
    fn every_example_line_fits() {
        use clap::CommandFactory;
        let cli = crate::Cli::command();
        for sub in cli
            .get_subcommands()
            .flat_map(|c| std::iter::once(c).chain(c.get_subcommands()))
        {
            let Some(help) = sub.get_after_help() else {
                continue;
            };
            for line in help.to_string().lines() {
                assert!(line.len() <= 100, "{}: {line}", sub.get_name());
            }
        }
    }
}

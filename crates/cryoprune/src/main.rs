//! The `cryoprune` command line. Each subcommand lives in its own file under `commands/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod printer;

/// Remove false-positive particle picks (carbon, ice, aggregates) from cryo-EM micrographs with
/// a pretrained CNN fine-tuned on a few labelled picks, and write the kept picks back in the
/// picker's own format.
#[derive(Parser)]
#[command(name = "cryoprune", version, propagate_version = true)]
struct Cli {
    /// More detail on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

/// The subcommands: each is `commands::<module>::{Args, run}`.
macro_rules! subcommands {
    ($($variant:ident => $module:ident),* $(,)?) => {
        #[derive(Subcommand)]
        enum Command { $($variant(commands::$module::Args)),* }
        fn dispatch(command: Command) -> anyhow::Result<()> {
            match command { $(Command::$variant(a) => commands::$module::run(a)),* }
        }
    };
}

subcommands! {
    Info => info, Convert => convert, Extract => extract, Simulate => simulate, Demo => demo,
    Train => train, Evaluate => evaluate, Prune => prune, Fewshot => fewshot,
    Pretrain => pretrain, Relion => relion, Merge => merge, Label => label, Picker => picker,
    Pick => pick, EvaluatePicks => evaluate_picks, Curate => curate,
}

fn main() -> ExitCode {
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        if e.use_stderr() {
            cryoprune_jobs::relion::arguments_failed(&std::env::args().collect::<Vec<_>>());
        }
        e.exit()
    });
    let level = ["warn", "info", "debug"][usize::from(cli.verbose.min(2))];
    let filter = tracing_subscriber::EnvFilter::try_from_default_env();
    tracing_subscriber::fmt()
        .with_env_filter(filter.unwrap_or_else(|_| level.into()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
    // Ctrl-C lets extract and prune stop at the next micrograph and remove their partial
    // files; a second one, or one during any other job, ends the process at once.
    let _ = ctrlc::set_handler(|| {
        if !cryoprune_jobs::interrupt() {
            std::process::exit(130);
        }
    });
    let result = dispatch(cli.command);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            match e.downcast_ref::<cryoprune_jobs::Error>() {
                // What a shell reports for a process ended by SIGINT.
                Some(cryoprune_jobs::Error::Interrupted) => ExitCode::from(130),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks (unique names among them), which a release build skips.
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}

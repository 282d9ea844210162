//! Prints a job's events: narrative to stderr, results to stdout, warnings through `tracing`, and
//! progress as a bar drawn only when stderr is a terminal (logs and pipes stay clean).

use std::sync::Mutex;

use cryoprune_jobs::events::EpochStats;
use cryoprune_jobs::{Event, Events};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Default)]
pub struct Printer {
    bar: Mutex<Option<ProgressBar>>,
}

impl Printer {
    fn with_bar(&self, f: impl FnOnce(&ProgressBar)) {
        if let Some(bar) = self.bar.lock().expect("not poisoned").as_ref() {
            f(bar);
        }
    }
}

impl Events for Printer {
    fn emit(&self, event: Event) {
        match event {
            Event::Note(text) => eprintln!("{text}"),
            Event::Warning(text) => tracing::warn!("{text}"),
            Event::Output(text) => println!("{text}"),
            Event::Started { total, unit } => {
                let bar = ProgressBar::new(total);
                let style = ProgressStyle::with_template(&format!(
                    "{{bar:30}} {{pos}}/{{len}} {unit} {{msg}} [{{elapsed_precise}}, ETA {{eta}}]"
                ))
                .expect("the template is valid");
                bar.set_style(style);
                *self.bar.lock().expect("not poisoned") = Some(bar);
            }
            Event::Advanced(n) => self.with_bar(|b| b.inc(n)),
            Event::Status(text) => self.with_bar(|b| b.set_message(text)),
            Event::Finished => {
                if let Some(bar) = self.bar.lock().expect("not poisoned").take() {
                    bar.finish_and_clear();
                }
            }
            Event::Epoch(s) => {
                if s.epoch == 1 {
                    eprintln!("{}", EpochStats::HEADER);
                }
                eprintln!("{}", s.row());
            }
            Event::Step(command) => println!("\n$ {command}"),
            Event::Threads(n) => tracing::debug!("running on {n} threads"),
        }
    }
}

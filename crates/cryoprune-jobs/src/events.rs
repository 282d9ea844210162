//! How a job tells its caller what it is doing. The command line prints events to stderr (and
//! results to stdout) with progress bars; a server can stream them; tests collect them.

pub use cryoprune_train::EpochStats;

/// One thing a job reports.
#[derive(Debug, Clone)]
pub enum Event {
    /// A line of narrative for the user (what was read, what is being done).
    Note(String),
    /// Something the user should look at; the job goes on.
    Warning(String),
    /// A result the job produced (a table, a summary): what a script would capture.
    Output(String),
    /// Work of `total` units (`unit`: "picks", "micrographs") begins.
    Started { total: u64, unit: &'static str },
    /// `n` more units are done.
    Advanced(u64),
    /// A short status beside the progress (e.g. particles written so far).
    Status(String),
    /// The work announced by the last `Started` is over.
    Finished,
    /// One training epoch is over.
    Epoch(EpochStats),
    /// A demo step is about to run: the command line that does the same by hand.
    Step(String),
    /// The job's threads, as its pool really has them.
    Threads(usize),
}

/// Receives a job's events. Called from the job's threads, hence `Sync`.
pub trait Events: Sync {
    fn emit(&self, event: Event);

    fn note(&self, text: String) {
        self.emit(Event::Note(text));
    }

    fn warn(&self, text: String) {
        self.emit(Event::Warning(text));
    }

    fn output(&self, text: String) {
        self.emit(Event::Output(text));
    }

    /// True once the caller no longer wants the job's result: training stops after the epoch
    /// that is running (the labelling page cancels a fit that newer labels made stale).
    fn cancelled(&self) -> bool {
        false
    }
}

/// Discards every event.
pub struct Silent;

impl Events for Silent {
    fn emit(&self, _: Event) {}
}

/// Keeps every event, for tests and for callers that show them later.
#[derive(Default)]
pub struct Collect(pub std::sync::Mutex<Vec<Event>>);

impl Events for Collect {
    fn emit(&self, event: Event) {
        self.0.lock().expect("not poisoned").push(event);
    }
}

impl Collect {
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().expect("not poisoned").clone()
    }
}

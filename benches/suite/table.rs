//! The results table: one markdown row per comparison.

use crate::measure::{Measured, Unit};

pub struct Row {
    pub label: String,
    pub ours: Measured,
    pub cli: Option<Measured>,
    pub notes: String,
}

pub const HEADER: &str = "| benchmark | ours | CLI | CLI/ours | notes |\n|---|---|---|---|---|";

impl Row {
    pub fn markdown(&self) -> String {
        let ratio = self
            .cli
            .map(|cli| format!("{:.2}×", cli.median / self.ours.median.max(1e-9)))
            .unwrap_or_else(|| "—".into());
        let mut notes = self.runs_note();
        if !self.notes.is_empty() {
            notes = format!("{}; {notes}", self.notes);
        }
        format!(
            "| {} | {} | {} | {ratio} | {notes} |",
            self.label,
            value(&self.ours),
            self.cli.as_ref().map_or_else(|| "—".into(), value),
        )
    }

    /// `median of 5 runs`, or both counts when they differ.
    fn runs_note(&self) -> String {
        let what = match self.ours.unit {
            Unit::Seconds => "median",
            Unit::MiB => "median peak RSS",
        };
        let long = if self.ours.long || self.cli.is_some_and(|c| c.long) {
            " (a run takes over five minutes)"
        } else {
            ""
        };
        match self.cli {
            Some(cli) if cli.runs != self.ours.runs => format!(
                "{what} of {} runs (ours) and {} (CLI){long}",
                self.ours.runs, cli.runs
            ),
            _ => format!("{what} of {} runs{long}", self.ours.runs),
        }
    }
}

fn value(m: &Measured) -> String {
    match m.unit {
        Unit::Seconds if m.median < 1.0 => format!("{:.0} ms", m.median * 1000.0),
        Unit::Seconds => format!("{:.2} s", m.median),
        Unit::MiB => format!("{:.1} MiB", m.median),
    }
}

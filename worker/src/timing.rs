//! The `Server-Timing` header (W3C): named stages with durations in milliseconds.
//!
//! Clock reads happen in the glue; this only formats. In production Workers the clock
//! advances only across I/O (a Spectre mitigation), so stage durations there are coarse:
//! CPU-only stages may read 0. Under local workerd they are real.

use std::fmt::Write;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ServerTiming {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq)]
enum Entry {
    Stage(&'static str, f64),
    /// A metric with a description and no duration (`arm;desc="canary"`).
    Note(&'static str, String),
}

impl ServerTiming {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a stage. Negative or non-finite durations (a clock step) are clamped to 0.
    pub fn add(&mut self, name: &'static str, millis: f64) -> &mut Self {
        let millis = if millis.is_finite() && millis > 0.0 {
            millis
        } else {
            0.0
        };
        self.entries.push(Entry::Stage(name, millis));
        self
    }

    /// Records a fact without a duration, e.g. which origin arm served. `desc` is a
    /// quoted-string; `"` and `\` are dropped from it.
    pub fn note(&mut self, name: &'static str, desc: &str) -> &mut Self {
        let desc = desc.chars().filter(|c| !matches!(c, '"' | '\\')).collect();
        self.entries.push(Entry::Note(name, desc));
        self
    }

    pub fn header_value(&self) -> String {
        let mut out = String::new();
        for (i, entry) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            // Writing to a String cannot fail.
            let _ = match entry {
                Entry::Stage(name, millis) => write!(out, "{name};dur={millis:.1}"),
                Entry::Note(name, desc) => write!(out, "{name};desc=\"{desc}\""),
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_listed_in_order_with_one_decimal() {
        let mut timing = ServerTiming::new();
        timing.add("origin", 12.345).add("edge", 13.0);
        assert_eq!(timing.header_value(), "origin;dur=12.3, edge;dur=13.0");
    }

    #[test]
    fn clock_steps_never_produce_negative_durations() {
        let mut timing = ServerTiming::new();
        timing.add("edge", -3.0).add("origin", f64::NAN);
        assert_eq!(timing.header_value(), "edge;dur=0.0, origin;dur=0.0");
    }

    #[test]
    fn notes_carry_a_quoted_description_and_no_duration() {
        let mut timing = ServerTiming::new();
        timing
            .note("arm", "stable:breaker-open")
            .add("edge", 1.0)
            .note("x", "a\"b\\c");
        assert_eq!(
            timing.header_value(),
            "arm;desc=\"stable:breaker-open\", edge;dur=1.0, x;desc=\"abc\""
        );
    }
}

//! The `Server-Timing` header (W3C): named stages with durations in milliseconds.
//!
//! Clock reads happen in the glue; this only formats. In production Workers the clock
//! advances only across I/O (a Spectre mitigation), so stage durations there are coarse:
//! CPU-only stages may read 0. Under local workerd they are real.

use std::fmt::Write;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ServerTiming {
    entries: Vec<(&'static str, f64)>,
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
        self.entries.push((name, millis));
        self
    }

    pub fn header_value(&self) -> String {
        let mut out = String::new();
        for (i, (name, millis)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            // Writing to a String cannot fail.
            let _ = write!(out, "{name};dur={millis:.1}");
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
}

//! Stop strings over a token stream.
//!
//! Text that could still turn into a stop string is held back until it cannot, so a client never
//! receives the first half of a stop sequence.

/// Watches generated text for any of the request's stop strings.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text generated but not yet released.
    pending: String,
}

/// What to emit for one piece of generated text.
#[derive(Debug, PartialEq, Eq)]
pub enum StopCheck {
    /// Release this text (possibly empty while a prefix of a stop string is held).
    Emit(String),
    /// A stop string completed: release this text, which ends just before it, and finish.
    Stopped(String),
}

impl StopMatcher {
    pub fn new(stops: &[String]) -> Self {
        let stops = stops.iter().filter(|s| !s.is_empty()).cloned().collect();
        Self {
            stops,
            pending: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> StopCheck {
        self.pending.push_str(text);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min()
        {
            let before = self.pending[..at].to_owned();
            self.pending.clear();
            return StopCheck::Stopped(before);
        }
        let hold = self.longest_stop_prefix_suffix();
        let release_to = self.pending.len() - hold;
        let released = self.pending[..release_to].to_owned();
        self.pending.drain(..release_to);
        StopCheck::Emit(released)
    }

    /// Whatever is still held back when generation ends for another reason.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// Length of the longest suffix of `pending` that is a proper prefix of some stop string,
    /// rounded so the split falls on a character boundary.
    fn longest_stop_prefix_suffix(&self) -> usize {
        let mut best = 0;
        for stop in &self.stops {
            let max = stop.len().saturating_sub(1).min(self.pending.len());
            for len in (best + 1..=max).rev() {
                let start = self.pending.len() - len;
                if self.pending.is_char_boundary(start) && stop.starts_with(&self.pending[start..])
                {
                    best = len;
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut matcher = StopMatcher::new(&stops);
        let mut out = String::new();
        for piece in pieces {
            match matcher.push(piece) {
                StopCheck::Emit(text) => out.push_str(&text),
                StopCheck::Stopped(text) => {
                    out.push_str(&text);
                    return (out, true);
                }
            }
        }
        out.push_str(&matcher.flush());
        (out, false)
    }

    #[test]
    fn stop_string_split_across_tokens_is_never_emitted() {
        assert_eq!(run(&["\n\n"], &["a", "\n", "\n", "b"]), ("a".into(), true));
    }

    #[test]
    fn held_text_is_released_when_it_stops_matching() {
        assert_eq!(run(&["END"], &["E", "N", "x"]), ("ENx".into(), false));
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        assert_eq!(run(&["c", "b"], &["abcd"]), ("a".into(), true));
    }

    #[test]
    fn multibyte_text_splits_on_character_boundaries() {
        assert_eq!(run(&["ü!"], &["aü", "b"]), ("aüb".into(), false));
        assert_eq!(run(&["é"], &["x", "é"]), ("x".into(), true));
    }

    #[test]
    fn no_stops_releases_everything_at_once() {
        let mut matcher = StopMatcher::new(&[]);
        assert_eq!(matcher.push("abc"), StopCheck::Emit("abc".into()));
    }
}

//! One layer's K and V on the CPU, interleaved per position as candle-nn's decode kernel reads
//! them in place: `(positions, kv_heads, 2 * head_dim)`, each head's K then V.
//!
//! With a sliding window, positions no later query can see are dropped when the buffer is
//! full: the positions still seen (at most `window - 1`) move to its front, one copy per
//! `room - window + 1` new positions, so a local layer never needs more room than `window - 1`
//! plus its longest step, however long the generation. Without a window every position is
//! kept, and the buffer grows as needed.

/// Positions `start..start + len` of one layer's K and V.
pub struct KvBuffer {
    buf: Vec<f32>,
    /// Floats per position (every head's K and V).
    stride: usize,
    head_floats: usize,
    window: Option<usize>,
    /// The first position held.
    start: usize,
    len: usize,
}

impl KvBuffer {
    /// An empty buffer with room for `capacity` positions (at least one) of `kv_heads` heads of
    /// `head_dim`; with a `window` (above 0), one that drops what queries no longer see.
    pub fn new(kv_heads: usize, head_dim: usize, capacity: usize, window: Option<usize>) -> Self {
        assert_ne!(window, Some(0), "a sliding window of 0 positions");
        let stride = kv_heads * 2 * head_dim;
        Self {
            buf: vec![0.0; capacity.max(1) * stride],
            stride,
            head_floats: head_dim,
            window,
            start: 0,
            len: 0,
        }
    }

    /// Positions fed so far, dropped ones included: where the next one goes.
    pub fn end(&self) -> usize {
        self.start + self.len
    }

    /// Appends `t` positions of K and V, each `(t, kv_heads * head_dim)` row-major, after
    /// dropping the positions no query from [`KvBuffer::end`] on can see if room is short.
    pub fn append(&mut self, k: &[f32], v: &[f32], t: usize) {
        let row = self.stride / 2;
        assert!(
            k.len() == t * row && v.len() == t * row,
            "K and V hold {t} positions"
        );
        if (self.len + t) * self.stride > self.buf.len() {
            self.drop_unseen();
        }
        let needed = (self.len + t) * self.stride;
        if needed > self.buf.len() {
            self.buf.resize(needed.max(2 * self.buf.len()), 0.0);
        }
        let d = self.head_floats;
        for s in 0..t {
            let base = (self.len + s) * self.stride;
            for head in 0..row / d {
                let src = s * row + head * d;
                let dst = base + head * 2 * d;
                self.buf[dst..dst + d].copy_from_slice(&k[src..src + d]);
                self.buf[dst + d..dst + 2 * d].copy_from_slice(&v[src..src + d]);
            }
        }
        self.len += t;
    }

    /// Moves the positions a query at [`KvBuffer::end`] or later still sees to the front.
    fn drop_unseen(&mut self) {
        let Some(window) = self.window else {
            return;
        };
        let first_seen = (self.end() + 1).saturating_sub(window);
        if first_seen <= self.start {
            return;
        }
        let dropped = first_seen - self.start;
        self.buf
            .copy_within(dropped * self.stride..self.len * self.stride, 0);
        self.start = first_seen;
        self.len -= dropped;
    }

    /// Positions `from..end()`, `from` no earlier than the first one held.
    pub fn since(&self, from: usize) -> candle_core::Result<&[f32]> {
        if from < self.start || from > self.end() {
            candle_core::bail!(
                "KV cache: positions from {from} asked, {}..{} held",
                self.start,
                self.end()
            );
        }
        Ok(&self.buf[(from - self.start) * self.stride..self.len * self.stride])
    }

    /// Takes positions `0..positions` of `other`, this buffer holding nothing yet; false (and
    /// nothing taken) where `other` no longer holds all of them (a window dropped some) or is
    /// laid out otherwise.
    pub fn copy_prefix(&mut self, other: &KvBuffer, positions: usize) -> bool {
        let fits = self.stride == other.stride && self.window == other.window;
        if !fits || self.end() != 0 || other.start != 0 || other.len < positions {
            return false;
        }
        let floats = positions * self.stride;
        if self.buf.len() < floats {
            self.buf.resize(floats, 0.0);
        }
        self.buf[..floats].copy_from_slice(&other.buf[..floats]);
        self.len = positions;
        true
    }

    /// Positions the buffer has room for.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.buf.len() / self.stride
    }

    /// Forgets every position, keeping the buffer.
    pub fn reset(&mut self) {
        self.start = 0;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two heads of 2: position `p` has K `[p, p, 10p, 10p]`... as `(k, v)` rows.
    fn rows(positions: std::ops::Range<usize>) -> (Vec<f32>, Vec<f32>) {
        let k = positions
            .clone()
            .flat_map(|p| [p as f32, p as f32, 10.0 * p as f32, 10.0 * p as f32])
            .collect();
        let v = positions.flat_map(|p| [-(p as f32); 4]).collect();
        (k, v)
    }

    /// Position `p` interleaved: head 0's K and V, then head 1's.
    fn interleaved(p: usize) -> [f32; 8] {
        let (p, ten, neg) = (p as f32, 10.0 * p as f32, -(p as f32));
        [p, p, neg, neg, ten, ten, neg, neg]
    }

    fn feed(buffer: &mut KvBuffer, steps: &[usize]) {
        for &t in steps {
            let end = buffer.end();
            let (k, v) = rows(end..end + t);
            buffer.append(&k, &v, t);
        }
    }

    #[test]
    fn without_a_window_every_position_is_kept_and_the_buffer_grows() {
        let mut buffer = KvBuffer::new(2, 2, 2, None);

        feed(&mut buffer, &[3, 1, 4]);

        assert_eq!(buffer.end(), 8);
        let held = buffer.since(0).unwrap();
        for p in 0..8 {
            assert_eq!(held[p * 8..(p + 1) * 8], interleaved(p), "position {p}");
        }
        assert_eq!(
            buffer.since(6).unwrap(),
            [interleaved(6), interleaved(7)].concat()
        );
    }

    #[test]
    fn with_a_window_what_queries_still_see_is_kept_in_bounded_room() {
        let window = 3;
        let mut buffer = KvBuffer::new(2, 2, 4, Some(window));

        for _ in 0..50 {
            feed(&mut buffer, &[1]);
            // The query at the last position sees it and the window - 1 before it.
            let first = buffer.end() - window.min(buffer.end());
            let held = buffer.since(first).unwrap();
            let expected: Vec<f32> = (first..buffer.end()).flat_map(interleaved).collect();
            assert_eq!(held, expected.as_slice());
        }
        assert_eq!(buffer.capacity(), 4, "never grew");
        assert!(buffer.since(40).is_err(), "position 40 was dropped");
    }

    #[test]
    fn a_step_longer_than_the_room_grows_it_once() {
        let mut buffer = KvBuffer::new(2, 2, 4, Some(3));

        feed(&mut buffer, &[2, 9, 1, 1]);

        assert_eq!(buffer.end(), 13);
        // The 9-position step needed 2 + 9 positions: position 0 was still seen (by the
        // query at 2), so nothing could be dropped and the room grew to 11, then sufficed.
        assert_eq!(buffer.capacity(), 11);
        let expected: Vec<f32> = (10..13).flat_map(interleaved).collect();
        assert_eq!(buffer.since(10).unwrap(), expected.as_slice());
    }

    #[test]
    fn a_reset_buffer_starts_over_in_the_same_room() {
        let mut buffer = KvBuffer::new(2, 2, 4, Some(2));
        feed(&mut buffer, &[3, 3]);
        let room = buffer.capacity();

        buffer.reset();
        feed(&mut buffer, &[1]);

        assert_eq!(buffer.end(), 1);
        assert_eq!(buffer.since(0).unwrap(), interleaved(0));
        assert_eq!(buffer.capacity(), room);
    }

    #[test]
    fn a_prefix_copied_from_another_buffer_continues_as_if_fed_here() {
        let mut source = KvBuffer::new(2, 2, 4, None);
        feed(&mut source, &[3, 2]);
        let mut fed = KvBuffer::new(2, 2, 4, None);
        feed(&mut fed, &[3, 1]);

        let mut copied = KvBuffer::new(2, 2, 1, None);
        assert!(copied.copy_prefix(&source, 3));
        feed(&mut copied, &[1]);

        assert_eq!(copied.since(0).unwrap(), fed.since(0).unwrap());
        assert!(!copied.copy_prefix(&source, 2), "only into an empty buffer");
    }

    #[test]
    fn a_prefix_a_window_dropped_is_not_copied() {
        let mut source = KvBuffer::new(2, 2, 2, Some(2));
        feed(&mut source, &[2, 1, 1]);
        let mut copied = KvBuffer::new(2, 2, 4, Some(2));
        assert!(!copied.copy_prefix(&source, 2));
        assert_eq!(copied.end(), 0);
    }
}

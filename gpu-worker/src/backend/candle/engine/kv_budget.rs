//! The KV memory a worker may hand out: each running sequence reserves room for its prompt and
//! every token it may generate, so a sequence admitted never runs out.

/// Reservations against `--kv-cache-bytes`.
#[derive(Debug)]
pub struct KvBudget {
    capacity: u64,
    bytes_per_position: u64,
    used: u64,
}

impl KvBudget {
    pub fn new(capacity: u64, bytes_per_position: usize) -> Self {
        Self {
            capacity,
            bytes_per_position: bytes_per_position as u64,
            used: 0,
        }
    }

    /// Bytes `positions` take.
    pub fn bytes(&self, positions: usize) -> u64 {
        (positions as u64).saturating_mul(self.bytes_per_position)
    }

    /// Whether `positions` could ever fit, with nothing else running.
    pub fn fits_alone(&self, positions: usize) -> bool {
        self.bytes(positions) <= self.capacity
    }

    /// Reserves `positions` if they fit beside what is reserved.
    pub fn try_reserve(&mut self, positions: usize) -> bool {
        let bytes = self.bytes(positions);
        match self.used.checked_add(bytes) {
            Some(total) if total <= self.capacity => {
                self.used = total;
                true
            }
            _ => false,
        }
    }

    /// Gives back a reservation of `positions`.
    pub fn release(&mut self, positions: usize) {
        self.used = self.used.saturating_sub(self.bytes(positions));
    }

    /// The share reserved, 0 to 1.
    pub fn usage_ratio(&self) -> f64 {
        match self.capacity {
            0 => 0.0,
            capacity => self.used as f64 / capacity as f64,
        }
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_fit_until_the_capacity_and_come_back() {
        let mut budget = KvBudget::new(100, 10);
        assert!(budget.try_reserve(6));
        assert!(!budget.try_reserve(5), "60 + 50 bytes exceed 100");
        assert!(budget.try_reserve(4));
        assert_eq!(budget.usage_ratio(), 1.0);
        budget.release(6);
        assert!(budget.try_reserve(5));
        assert!(budget.fits_alone(10));
        assert!(!budget.fits_alone(11));
    }

    #[test]
    fn huge_requests_never_overflow() {
        let mut budget = KvBudget::new(u64::MAX, usize::MAX);
        assert!(budget.try_reserve(usize::MAX), "saturates at the capacity");
        assert!(!budget.try_reserve(1), "an overflowing sum is refused");
        budget.release(usize::MAX);
        assert_eq!(budget.usage_ratio(), 0.0);
    }
}

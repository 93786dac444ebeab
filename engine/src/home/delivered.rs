//! Which numbers of one chat a connection has been sent: a few disjoint
//! ranges, so that no sequence of syncs sends a message twice. A live
//! message adds its number; a sync adds the whole range it covered (every
//! message of it the user may see was sent then or before). Live messages
//! skip numbers the user may not see, so ranges split; the next sync over
//! them joins them again.
//!
//! Bounded: past [`RANGES_MAX`] ranges the lowest is forgotten. Forgetting
//! can only make a later sync send a message again (the client drops it by
//! number), never leave one out.

/// Ranges remembered per chat of a connection: 64 gaps of invisible
/// messages between two syncs, 1 KiB.
pub const RANGES_MAX: usize = 64;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Inclusive, ascending, neither overlapping nor adjacent.
    ranges: Vec<(u64, u64)>,
}

impl Delivered {
    pub fn contains(&self, number: u64) -> bool {
        let index = self.ranges.partition_point(|&(_, high)| high < number);
        self.ranges
            .get(index)
            .is_some_and(|&(low, _)| low <= number)
    }

    pub fn insert(&mut self, number: u64) {
        self.insert_range(number, number);
    }

    /// Adds `low..=high`; nothing when `low > high`.
    pub fn insert_range(&mut self, low: u64, high: u64) {
        if low > high {
            return;
        }
        // The ranges that overlap or touch the new one merge into it.
        let first = self
            .ranges
            .partition_point(|&(_, h)| h.saturating_add(1) < low);
        let last = self
            .ranges
            .partition_point(|&(l, _)| l <= high.saturating_add(1));
        let (mut merged_low, mut merged_high) = (low, high);
        if first < last {
            merged_low = merged_low.min(self.ranges[first].0);
            merged_high = merged_high.max(self.ranges[last - 1].1);
        }
        self.ranges.splice(first..last, [(merged_low, merged_high)]);
        if self.ranges.len() > RANGES_MAX {
            self.ranges.remove(0);
        }
        debug_assert!(
            self.ranges
                .windows(2)
                .all(|w| w[0].1.saturating_add(1) < w[1].0)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_split() {
        let mut delivered = Delivered::default();
        for n in [1, 2, 4, 5, 7] {
            delivered.insert(n);
        }
        assert_eq!(delivered.ranges, [(1, 2), (4, 5), (7, 7)]);
        assert!(delivered.contains(4) && !delivered.contains(3) && !delivered.contains(8));
        delivered.insert_range(3, 3);
        assert_eq!(delivered.ranges, [(1, 5), (7, 7)]);
        delivered.insert_range(0, 10);
        assert_eq!(delivered.ranges, [(0, 10)]);
        delivered.insert_range(12, 11);
        assert_eq!(delivered.ranges, [(0, 10)]);
        delivered.insert(u64::MAX);
        assert!(delivered.contains(u64::MAX));
    }

    #[test]
    fn the_lowest_range_is_forgotten_past_the_bound() {
        let mut delivered = Delivered::default();
        for n in 0..=RANGES_MAX as u64 {
            delivered.insert(n * 2);
        }
        assert_eq!(delivered.ranges.len(), RANGES_MAX);
        assert!(!delivered.contains(0));
        assert!(delivered.contains(2));
    }

    /// Against a set, over a seeded stream of inserts.
    #[test]
    fn agrees_with_a_set() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut delivered = Delivered::default();
        let mut set = std::collections::BTreeSet::new();
        for _ in 0..2_000 {
            let low = next() % 300;
            let high = low + next() % 4;
            delivered.insert_range(low, high);
            set.extend(low..=high);
            if delivered.ranges.len() >= RANGES_MAX {
                break;
            }
        }
        for n in 0..310 {
            assert_eq!(delivered.contains(n), set.contains(&n), "{n}");
        }
    }
}

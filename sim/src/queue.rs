//! The simulator's event queue: a 4-ary min-heap of `(virtual nanoseconds, sequence number,
//! slab key)`, ordered by time, then sequence number.
//!
//! It pops in exactly the order of `BinaryHeap<Reverse<_>>` over the same entries (the
//! sequence numbers are unique, so the order is total), but a node's four children lie side
//! by side (96 bytes, one or two cache lines) and the tree is half as deep: at thousands of
//! simulated nodes the queue holds hundreds of thousands of timers, and a binary heap's pop,
//! one cache miss a level, was 5 % of a 2,000-node run.

/// One pending event: when, its sequence number (the tie-break), and its slab key.
pub(crate) type Entry = (u64, u64, u32);

/// A 4-ary min-heap of [`Entry`]. See the module documentation.
#[derive(Default)]
pub(crate) struct EventQueue {
    items: Vec<Entry>,
}

fn before(a: &Entry, b: &Entry) -> bool {
    (a.0, a.1) < (b.0, b.1)
}

impl EventQueue {
    /// The earliest entry.
    pub(crate) fn peek(&self) -> Option<&Entry> {
        self.items.first()
    }

    /// Adds `e`.
    pub(crate) fn push(&mut self, e: Entry) {
        let mut i = self.items.len();
        self.items.push(e);
        while i > 0 {
            let parent = (i - 1) / 4;
            if !before(&e, &self.items[parent]) {
                break;
            }
            self.items[i] = self.items[parent];
            i = parent;
        }
        self.items[i] = e;
    }

    /// Removes and returns the earliest entry.
    pub(crate) fn pop(&mut self) -> Option<Entry> {
        let last = self.items.pop()?;
        let Some(&top) = self.items.first() else {
            return Some(last);
        };
        // Move the hole at the root down to where `last` belongs.
        let len = self.items.len();
        let mut i = 0;
        loop {
            let first = 4 * i + 1;
            if first >= len {
                break;
            }
            let mut min = first;
            for c in first + 1..(first + 4).min(len) {
                if before(&self.items[c], &self.items[min]) {
                    min = c;
                }
            }
            if !before(&self.items[min], &last) {
                break;
            }
            self.items[i] = self.items[min];
            i = min;
        }
        self.items[i] = last;
        Some(top)
    }

    /// How many entries wait.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    #[test]
    fn pops_in_the_order_of_a_binary_heap() {
        let mut q = EventQueue::default();
        let mut model = BinaryHeap::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut seq = 0;
        let mut now = 0u64;
        for step in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Pushes mostly, bursts of pops, many equal times (ties broken by sequence).
            if x % 5 < 3 || model.is_empty() {
                seq += 1;
                let e = (now + x % 64, seq, (x >> 40) as u32);
                q.push(e);
                model.push(Reverse(e));
            } else {
                let got = q.pop();
                let want = model.pop().map(|Reverse(e)| e);
                assert_eq!(got, want, "step {step}");
                if let Some(e) = got {
                    now = e.0;
                }
            }
            assert_eq!(q.len(), model.len());
            assert_eq!(q.peek().copied(), model.peek().map(|Reverse(e)| *e));
        }
        while let Some(Reverse(e)) = model.pop() {
            assert_eq!(q.pop(), Some(e));
        }
        assert_eq!(q.pop(), None);
    }
}

//! [`DeadlineQueue`]: items by deadline, ties in the order they were pushed. The one queue
//! that delivers a [`crate::Node`]'s timers in the order its documentation asks, used by the
//! agent (deadlines are `Instant`s), the simulator (virtual nanoseconds; every event, not
//! only timers) and the core's tests (virtual `Duration`s).
//!
//! A binary heap of `(deadline, sequence number, slot)` keys, the items themselves in a slab
//! beside it (reused slots), so the heap moves three integers, never an item.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Items by deadline; see the module documentation.
#[derive(Debug, Clone)]
pub struct DeadlineQueue<K, V> {
    heap: BinaryHeap<Reverse<(K, u64, u32)>>,
    slots: Vec<Option<V>>,
    free: Vec<u32>,
    seq: u64,
}

impl<K: Ord + Copy, V> Default for DeadlineQueue<K, V> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
        }
    }
}

impl<K: Ord + Copy, V> DeadlineQueue<K, V> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `item`, due at `at`: after every item due earlier, and after every item due at
    /// the same time that was pushed before it.
    pub fn push(&mut self, at: K, item: V) {
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(item);
                s
            }
            None => {
                self.slots.push(Some(item));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 items pending")
            }
        };
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, slot)));
    }

    /// The earliest deadline, if any item is pending.
    pub fn next_deadline(&self) -> Option<K> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Takes the earliest item, with its deadline.
    pub fn pop(&mut self) -> Option<(K, V)> {
        let Reverse((at, _, slot)) = self.heap.pop()?;
        let item = self.slots[slot as usize]
            .take()
            .expect("every key in the heap has its item");
        self.free.push(slot);
        Some((at, item))
    }

    /// Takes the earliest item if it is due at or before `now`.
    pub fn pop_due(&mut self, now: K) -> Option<(K, V)> {
        if self.next_deadline()? > now {
            return None;
        }
        self.pop()
    }

    /// How many items are pending.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Keeps only the items `keep` accepts (their order unchanged).
    pub fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        let slots = &mut self.slots;
        let free = &mut self.free;
        self.heap.retain(|Reverse((_, _, slot))| {
            let kept = slots[*slot as usize].as_ref().is_some_and(&mut keep);
            if !kept {
                slots[*slot as usize] = None;
                free.push(*slot);
            }
            kept
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_ties_in_push_order() {
        let mut q = DeadlineQueue::new();
        for (at, v) in [(5, "e"), (1, "a"), (3, "c"), (1, "b"), (3, "d"), (9, "f")] {
            q.push(at, v);
        }
        assert_eq!(q.next_deadline(), Some(1));
        assert_eq!(q.pop_due(0), None);
        let mut out = Vec::new();
        while let Some((at, v)) = q.pop_due(5) {
            out.push((at, v));
        }
        assert_eq!(out, [(1, "a"), (1, "b"), (3, "c"), (3, "d"), (5, "e")]);
        assert_eq!(q.len(), 1);
        q.push(9, "g");
        q.retain(|v| *v != "f");
        assert_eq!(q.pop(), Some((9, "g")));
        assert!(q.is_empty() && q.pop().is_none());
        // Slots are reused: the slab never grows past the most items pending at once.
        for i in 0..100 {
            q.push(i, "x");
            q.pop();
        }
        assert!(q.slots.len() <= 6);
    }
}

//! The virtual clock's event queue: a binary heap of `(time, sequence)`
//! keys over a slab of payloads.
//!
//! Events at the same instant leave in the order they were scheduled (the
//! sequence number breaks ties), so the order of a run depends on nothing
//! but its inputs. Payloads live in a slab and the heap moves only 24-byte
//! keys, so a large payload (a request frame) is never copied while the
//! heap reorders.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use mars_proto::Timestamp;

/// A timed event queue, earliest first, FIFO among equal times.
#[derive(Debug)]
pub struct EventQueue<T> {
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    slots: Vec<Option<T>>,
    free: Vec<u32>,
    seq: u64,
}

impl<T> Default for EventQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> EventQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
        }
    }

    /// Schedules `event` at `at`.
    pub fn push(&mut self, at: Timestamp, event: T) {
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(event);
                s
            }
            None => {
                self.slots.push(Some(event));
                (self.slots.len() - 1) as u32
            }
        };
        self.seq += 1;
        self.heap.push(Reverse((at.as_micros(), self.seq, slot)));
    }

    /// The time of the earliest event.
    pub fn peek_time(&self) -> Option<Timestamp> {
        self.heap
            .peek()
            .map(|Reverse((t, _, _))| Timestamp::from_micros(*t))
    }

    /// Removes and returns the earliest event.
    pub fn pop(&mut self) -> Option<(Timestamp, T)> {
        let Reverse((t, _, slot)) = self.heap.pop()?;
        let event = self.slots[slot as usize].take()?;
        self.free.push(slot);
        Some((Timestamp::from_micros(t), event))
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Events scheduled since the queue was made (popped or not).
    pub fn scheduled(&self) -> u64 {
        self.seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_and_fifo_among_equals() {
        let mut q = EventQueue::new();
        let t = |s| Timestamp::from_secs(s);
        q.push(t(5), "e");
        q.push(t(1), "a");
        q.push(t(3), "c1");
        q.push(t(3), "c2");
        q.push(t(3), "c3");
        q.push(t(2), "b");
        let order: Vec<&str> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, ["a", "b", "c1", "c2", "c3", "e"]);
        assert!(q.is_empty());
    }

    #[test]
    fn slots_are_reused() {
        let mut q = EventQueue::new();
        for round in 0..10u64 {
            for i in 0..100u64 {
                q.push(Timestamp::from_micros(round * 1000 + i), i);
            }
            while q.pop().is_some() {}
        }
        assert!(q.slots.len() <= 100);
        assert_eq!(q.scheduled(), 1000);
    }
}

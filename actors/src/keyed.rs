//! Work grouped by key, run with a cap per key and a cap overall: the queue both pools use.
//!
//! A processor keys events by subscription with one in flight per key, which keeps one
//! subscription's events in order; the delivery pool keys deliveries by target with a few in
//! flight per key, so that a slow target holds only its own slots. Keys take turns (round
//! robin), so a key with a long backlog does not starve the others. Items already queued or
//! running are refused, so the sweep and the fast path can both hand over the same id.

use std::collections::{HashMap, HashSet, VecDeque};

/// The queue of one worker.
#[derive(Debug)]
pub struct KeyedQueue {
    per_key: usize,
    max_in_flight: usize,
    queues: HashMap<String, VecDeque<String>>,
    running: HashMap<String, usize>,
    /// Keys with queued items and room to start one, in turn order (each at most once).
    ready: VecDeque<String>,
    in_ready: HashSet<String>,
    /// Every item queued or running.
    known: HashSet<String>,
    in_flight: usize,
    queued: usize,
}

impl KeyedQueue {
    /// At most `per_key` items of one key and `max_in_flight` items in all run at once (each
    /// at least 1).
    pub fn new(per_key: usize, max_in_flight: usize) -> Self {
        Self {
            per_key: per_key.max(1),
            max_in_flight: max_in_flight.max(1),
            queues: HashMap::new(),
            running: HashMap::new(),
            ready: VecDeque::new(),
            in_ready: HashSet::new(),
            known: HashSet::new(),
            in_flight: 0,
            queued: 0,
        }
    }

    /// Queues `item` under `key`. False when the item is queued or running already.
    pub fn push(&mut self, key: &str, item: String) -> bool {
        if !self.known.insert(item.clone()) {
            return false;
        }
        self.queues
            .entry(key.to_string())
            .or_default()
            .push_back(item);
        self.queued += 1;
        self.mark_ready(key);
        true
    }

    /// The next item to start, if the caps allow one; it counts as running until [`done`].
    ///
    /// [`done`]: KeyedQueue::done
    pub fn start_next(&mut self) -> Option<(String, String)> {
        if self.in_flight >= self.max_in_flight {
            return None;
        }
        let key = self.ready.pop_front()?;
        self.in_ready.remove(&key);
        let queue = self.queues.get_mut(&key)?;
        let item = queue.pop_front()?;
        let empty = queue.is_empty();
        if empty {
            self.queues.remove(&key);
        }
        *self.running.entry(key.clone()).or_default() += 1;
        self.in_flight += 1;
        self.queued -= 1;
        if !empty {
            self.mark_ready(&key);
        }
        Some((key, item))
    }

    /// Ends a running item, making room for the next of its key.
    pub fn done(&mut self, key: &str, item: &str) {
        if !self.known.remove(item) {
            return;
        }
        if let Some(n) = self.running.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.running.remove(key);
            }
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        self.mark_ready(key);
    }

    /// Items waiting to start.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Items running.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn mark_ready(&mut self, key: &str) {
        let has_work = self.queues.get(key).is_some_and(|q| !q.is_empty());
        let has_room = self.running.get(key).copied().unwrap_or(0) < self.per_key;
        if has_work && has_room && self.in_ready.insert(key.to_string()) {
            self.ready.push_back(key.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn drain(q: &mut KeyedQueue) -> Vec<(String, String)> {
        std::iter::from_fn(|| q.start_next()).collect()
    }

    #[test]
    fn one_key_runs_in_order_one_at_a_time() {
        let mut q = KeyedQueue::new(1, 10);
        for i in 0..3 {
            assert!(q.push("s", format!("e{i}")));
        }
        assert_eq!(drain(&mut q), vec![("s".into(), "e0".into())]);
        q.done("s", "e0");
        assert_eq!(drain(&mut q), vec![("s".into(), "e1".into())]);
        q.done("s", "e1");
        assert_eq!(drain(&mut q), vec![("s".into(), "e2".into())]);
        q.done("s", "e2");
        assert_eq!((q.queued(), q.in_flight()), (0, 0));
    }

    #[test]
    fn a_busy_key_does_not_hold_up_the_others() {
        let mut q = KeyedQueue::new(1, 10);
        q.push("slow", "a".into());
        q.push("slow", "b".into());
        q.push("fast", "c".into());
        let started = drain(&mut q);
        assert_eq!(started.len(), 2);
        q.done("fast", "c");
        q.push("fast", "d".into());
        assert_eq!(drain(&mut q), vec![("fast".into(), "d".into())]);
        assert_eq!(q.queued(), 1);
    }

    #[test]
    fn the_overall_cap_and_the_per_key_cap_hold_and_keys_take_turns() {
        let mut q = KeyedQueue::new(2, 3);
        for i in 0..5 {
            q.push("a", format!("a{i}"));
            q.push("b", format!("b{i}"));
        }
        let started = drain(&mut q);
        assert_eq!(started.len(), 3);
        assert!(started.iter().filter(|(k, _)| k == "a").count() <= 2);
        assert!(started.iter().any(|(k, _)| k == "b"));
        assert_eq!(q.in_flight(), 3);
        assert_eq!(q.queued(), 7);
    }

    #[test]
    fn an_item_known_already_is_refused_until_it_is_done() {
        let mut q = KeyedQueue::new(1, 1);
        assert!(q.push("s", "e".into()));
        assert!(!q.push("s", "e".into()));
        let (k, i) = q.start_next().unwrap();
        assert!(!q.push("s", "e".into()));
        q.done(&k, &i);
        assert!(q.push("s", "e".into()));
    }
}

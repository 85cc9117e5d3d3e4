//! Subscription ids the store was asked about and does not hold: a bounded, short-lived
//! negative cache.
//!
//! Anyone can POST items with made-up subscription ids. Each unknown id costs a store look-up
//! (the subscription may have been stored a moment ago); without this cache, the same forged
//! id would cost one on every request. An entry lives [`TTL`], so an id that another instance
//! stores is accepted again soon; learning a subscription removes its id at once. The cache
//! holds at most [`CAPACITY`] ids, the oldest going first, so a flood of fresh ids costs
//! bounded memory (and is bounded in store work by the look-up slots, not by this).

use std::collections::{HashMap, VecDeque};

/// How long "not in the store" is believed.
pub const TTL_MS: i64 = 5_000;

/// Most ids remembered.
pub const CAPACITY: usize = 10_000;

/// The negative cache.
#[derive(Default)]
pub struct Absent {
    /// id → when it was found absent (Unix ms).
    since: HashMap<String, i64>,
    /// Ids in the order they were added (an id may stand here after it left `since`).
    order: VecDeque<(String, i64)>,
}

impl Absent {
    /// Whether `id` was found absent less than [`TTL_MS`] before `now`.
    pub fn contains(&self, id: &str, now: i64) -> bool {
        self.since.get(id).is_some_and(|at| now - at < TTL_MS)
    }

    /// Notes that `id` is not in the store, as of `now`.
    pub fn insert(&mut self, id: String, now: i64) {
        self.expire(now);
        while self.since.len() >= CAPACITY {
            let Some((old, at)) = self.order.pop_front() else {
                break;
            };
            if self.since.get(&old) == Some(&at) {
                self.since.remove(&old);
            }
        }
        self.since.insert(id.clone(), now);
        self.order.push_back((id, now));
    }

    /// Forgets `id` (it was just learnt).
    pub fn remove(&mut self, id: &str) {
        self.since.remove(id);
    }

    /// Forgets everything (the map was reloaded from the store).
    pub fn clear(&mut self) {
        self.since.clear();
        self.order.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.since.len()
    }

    fn expire(&mut self, now: i64) {
        while let Some((id, at)) = self.order.front() {
            if now - at < TTL_MS && self.order.len() <= 2 * CAPACITY {
                break;
            }
            if self.since.get(id) == Some(at) {
                self.since.remove(id);
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_for_a_while_and_within_bounds() {
        let mut a = Absent::default();
        a.insert("x".into(), 0);
        assert!(a.contains("x", TTL_MS - 1));
        assert!(!a.contains("x", TTL_MS));
        a.remove("x");
        assert!(!a.contains("x", 1));
        for i in 0..(3 * CAPACITY) {
            a.insert(format!("id{i}"), 100);
        }
        assert_eq!(a.len(), CAPACITY);
        assert!(a.order.len() <= 2 * CAPACITY + 1);
        assert!(a.contains(&format!("id{}", 3 * CAPACITY - 1), 101));
        assert!(!a.contains("id0", 101));
        // Expired entries go when new ones come.
        a.insert("late".into(), 100 + TTL_MS);
        assert_eq!(a.len(), 1);
    }
}

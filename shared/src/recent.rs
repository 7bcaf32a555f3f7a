//! A bounded map that keeps what was used recently: the shape of every
//! per-isolate cache whose keys a client can vary (riders' tokens).
//!
//! Two generations: inserts go to the young one; when it is full the old
//! generation is dropped and the young one becomes old. A hit in the old
//! generation moves the entry back to the young one. So it holds at most
//! `2 × half` entries, an entry used within the last `half` inserts is
//! never dropped, and every operation is O(1) — an approximation of LRU
//! without a linked list.

use std::collections::HashMap;
use std::hash::Hash;

/// A map of at most `capacity` entries (rounded up to even).
#[derive(Debug, Clone)]
pub struct Recent<K, V> {
    young: HashMap<K, V>,
    old: HashMap<K, V>,
    half: usize,
}

impl<K: Hash + Eq, V> Recent<K, V> {
    /// An empty map of at most `capacity` entries (at least 2).
    pub fn new(capacity: usize) -> Self {
        Self {
            young: HashMap::new(),
            old: HashMap::new(),
            half: capacity.div_ceil(2).max(1),
        }
    }

    /// The value of `key`, marking it used.
    pub fn get(&mut self, key: &K) -> Option<&V>
    where
        K: Clone,
    {
        if !self.young.contains_key(key) {
            let (k, v) = self.old.remove_entry(key)?;
            self.insert(k, v);
        }
        self.young.get(key)
    }

    /// Puts `key` (replacing its value), dropping the least recently used
    /// generation when full.
    pub fn insert(&mut self, key: K, value: V) {
        self.old.remove(&key);
        if self.young.len() >= self.half && !self.young.contains_key(&key) {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, value);
    }

    /// Forgets `key`.
    pub fn remove(&mut self, key: &K) {
        self.young.remove(key);
        self.old.remove(key);
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.young.clear();
        self.old.clear();
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_never_holds_more_than_its_capacity() {
        let mut r = Recent::new(100);
        for i in 0..10_000u32 {
            r.insert(i, i);
            assert!(r.len() <= 100);
        }
        assert_eq!(r.get(&9_999), Some(&9_999));
        assert_eq!(r.get(&0), None);
    }

    #[test]
    fn what_is_used_stays() {
        let mut r = Recent::new(10);
        let hot = "hot".to_owned();
        r.insert(hot.clone(), 1);
        for i in 0..1_000u32 {
            r.insert(format!("k{}", i % 2), i);
            r.insert(format!("other{i}"), i);
            assert_eq!(r.get(&hot), Some(&1), "after {i}");
        }
        r.remove(&hot);
        assert_eq!(r.get(&hot), None);
        r.clear();
        assert!(r.is_empty());
    }
}

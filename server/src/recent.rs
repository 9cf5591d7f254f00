//! A set of the most recent ids, bounded: the oldest is forgotten once it is full. For
//! "have I seen this one lately?" where remembering everything would grow for ever (the
//! acks a socket had, the activity a feed has sent).

use std::collections::{HashSet, VecDeque};

pub struct RecentIds {
    kept: usize,
    order: VecDeque<String>,
    ids: HashSet<String>,
}

impl RecentIds {
    /// Remembers at most `kept` ids.
    pub fn new(kept: usize) -> Self {
        Self {
            kept,
            order: VecDeque::new(),
            ids: HashSet::new(),
        }
    }

    /// Remembers `id`; false if it was remembered already.
    pub fn insert(&mut self, id: &str) -> bool {
        if !self.ids.insert(id.to_string()) {
            return false;
        }
        self.order.push_back(id.to_string());
        if self.order.len() > self.kept
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        true
    }

    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::RecentIds;

    #[test]
    fn the_oldest_is_forgotten_once_full() {
        let mut recent = RecentIds::new(2);
        assert!(recent.insert("a"));
        assert!(!recent.insert("a"), "once");
        assert!(recent.insert("b"));
        assert!(recent.insert("c"));
        assert!(!recent.contains("a"));
        assert!(recent.contains("b") && recent.contains("c"));
    }
}

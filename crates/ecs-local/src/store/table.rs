//! [`Table`]: the plane's map of one kind of record (tasks, instances…).
//! A store update changes the live tables inside a transaction: the first
//! time a row is touched, the table keeps the row as it was (an `Arc`, so
//! keeping it costs nothing, and the row is copied only when it is then
//! changed). [`Table::pending`] lists the rows that really changed, from
//! those kept rows alone, and [`Table::rollback`] puts them back. So a
//! one-task change to a state of many thousand tasks copies one row and
//! writes one row (docs/ecs-local.md §6).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Rows keyed by name or id, in key order.
#[derive(Debug)]
pub struct Table<T> {
    rows: BTreeMap<String, Arc<T>>,
    /// While a transaction runs: each touched key's row before it was first
    /// touched (`None`: it was absent).
    undo: Option<BTreeMap<String, Option<Arc<T>>>>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            rows: BTreeMap::new(),
            undo: None,
        }
    }
}

/// A copy has the rows, not the transaction.
impl<T> Clone for Table<T> {
    fn clone(&self) -> Self {
        Self {
            rows: self.rows.clone(),
            undo: None,
        }
    }
}

impl<T: PartialEq> PartialEq for Table<T> {
    fn eq(&self, other: &Self) -> bool {
        self.rows.len() == other.rows.len()
            && self
                .rows
                .iter()
                .zip(&other.rows)
                .all(|((ka, a), (kb, b))| ka == kb && (Arc::ptr_eq(a, b) || a == b))
    }
}

/// One row that differs between two versions of a table.
#[derive(Debug, PartialEq)]
pub enum Change<'a, T> {
    Put(&'a str, &'a T),
    Delete(&'a str),
}

impl<T: Clone> Table<T> {
    pub fn get(&self, key: &str) -> Option<&T> {
        self.rows.get(key).map(|row| &**row)
    }

    /// Keeps the row of `key` as it is now, the first time a transaction
    /// touches it.
    fn touch(&mut self, key: &str) {
        if let Some(undo) = &mut self.undo {
            if !undo.contains_key(key) {
                undo.insert(key.to_owned(), self.rows.get(key).cloned());
            }
        }
    }

    /// The row to change; it stops being shared with other copies.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut T> {
        if !self.rows.contains_key(key) {
            return None;
        }
        self.touch(key);
        self.rows.get_mut(key).map(Arc::make_mut)
    }

    /// The row to change, made from `T::default()` when missing.
    pub fn get_or_default(&mut self, key: &str) -> &mut T
    where
        T: Default,
    {
        self.touch(key);
        Arc::make_mut(self.rows.entry(key.to_owned()).or_default())
    }

    pub fn insert(&mut self, key: String, value: T) {
        self.touch(&key);
        self.rows.insert(key, Arc::new(value));
    }

    pub fn remove(&mut self, key: &str) -> Option<T> {
        if !self.rows.contains_key(key) {
            return None;
        }
        self.touch(key);
        self.rows.remove(key).map(Arc::unwrap_or_clone)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.rows.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.rows.keys()
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.rows.values().map(|row| &**row)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &T)> {
        self.rows.iter().map(|(k, row)| (k, &**row))
    }

    /// Keeps the rows `keep` says yes to.
    pub fn retain(&mut self, keep: impl FnMut(&str, &T) -> bool) {
        for key in self.keys_refused(keep) {
            self.remove(&key);
        }
    }

    /// The keys of the rows `keep` says no to.
    pub fn keys_refused(&self, mut keep: impl FnMut(&str, &T) -> bool) -> Vec<String> {
        self.rows
            .iter()
            .filter(|(k, row)| !keep(k, row))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Starts a transaction: from now on the rows touched are kept as they
    /// were, until [`Table::commit`] or [`Table::rollback`].
    pub fn begin(&mut self) {
        self.undo = Some(BTreeMap::new());
    }

    /// Ends the transaction, keeping its changes.
    pub fn commit(&mut self) {
        self.undo = None;
    }

    /// Ends the transaction, putting every touched row back as it was.
    pub fn rollback(&mut self) {
        for (key, before) in self.undo.take().unwrap_or_default() {
            match before {
                Some(row) => {
                    self.rows.insert(key, row);
                }
                None => {
                    self.rows.remove(&key);
                }
            }
        }
    }

    pub fn in_transaction(&self) -> bool {
        self.undo.is_some()
    }

    /// The keys the running transaction touched so far.
    pub fn touched(&self) -> impl Iterator<Item = &String> {
        self.undo.iter().flat_map(BTreeMap::keys)
    }
}

impl<T: PartialEq> Table<T> {
    /// The rows the running transaction changed, in key order: touched rows
    /// equal to what they were are left out.
    pub fn pending(&self) -> Vec<Change<'_, T>> {
        let Some(undo) = &self.undo else {
            return Vec::new();
        };
        undo.iter()
            .filter_map(|(key, before)| match (before, self.rows.get(key)) {
                (Some(was), Some(now)) if Arc::ptr_eq(was, now) || **was == **now => None,
                (_, Some(now)) => Some(Change::Put(key, &**now)),
                (Some(_), None) => Some(Change::Delete(key)),
                (None, None) => None,
            })
            .collect()
    }

    /// The rows of `self` that differ from `before`: added or changed ones
    /// as [`Change::Put`], removed ones as [`Change::Delete`], in key order.
    /// Rows still shared with `before` are skipped without a comparison.
    pub fn changes<'a>(&'a self, before: &'a Table<T>) -> Vec<Change<'a, T>> {
        let mut out = Vec::new();
        let mut old = before.rows.iter().peekable();
        for (key, row) in &self.rows {
            while let Some((gone, _)) = old.next_if(|(k, _)| *k < key) {
                out.push(Change::Delete(gone));
            }
            match old.next_if(|(k, _)| *k == key) {
                Some((_, was)) if Arc::ptr_eq(was, row) || **was == **row => {}
                _ => out.push(Change::Put(key, &**row)),
            }
        }
        out.extend(old.map(|(gone, _)| Change::Delete(gone)));
        out
    }
}

impl<T: Clone> std::ops::Index<&str> for Table<T> {
    type Output = T;

    /// Panics when the row is missing, like a map's index; for tests.
    fn index(&self, key: &str) -> &T {
        match self.get(key) {
            Some(row) => row,
            None => panic!("no row {key:?}"),
        }
    }
}

impl<T: Clone> std::ops::Index<&String> for Table<T> {
    type Output = T;

    fn index(&self, key: &String) -> &T {
        &self[key.as_str()]
    }
}

impl<T: Clone> FromIterator<(String, T)> for Table<T> {
    fn from_iter<I: IntoIterator<Item = (String, T)>>(iter: I) -> Self {
        Self {
            rows: iter.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            undo: None,
        }
    }
}

impl<T: Serialize> Serialize for Table<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.rows.iter().map(|(k, row)| (k, &**row)))
    }
}

impl<'de, T: Deserialize<'de> + Clone> Deserialize<'de> for Table<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let rows = BTreeMap::<String, T>::deserialize(deserializer)?;
        Ok(rows.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn table(rows: &[(&str, i32)]) -> Table<i32> {
        rows.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn a_copy_shares_rows_until_one_is_changed() {
        let before = table(&[("a", 1), ("b", 2), ("c", 3)]);
        let mut after = before.clone();
        assert!(after.changes(&before).is_empty());
        *after.get_mut("b").unwrap() = 20;
        assert_eq!(before["b"], 2, "the copy's change stays in the copy");
        assert_eq!(after.changes(&before), vec![Change::Put("b", &20)]);
        // Touched but equal: no change.
        let mut same = before.clone();
        *same.get_mut("a").unwrap() = 1;
        assert!(same.changes(&before).is_empty());
        assert_eq!(same, before);
    }

    #[test]
    fn changes_list_puts_and_deletes_in_key_order() {
        let before = table(&[("b", 2), ("d", 4), ("f", 6)]);
        let mut after = before.clone();
        after.insert("a".into(), 1);
        after.remove("d");
        after.insert("e".into(), 5);
        after.retain(|k, _| k != "f");
        *after.get_or_default("g") += 7;
        assert_eq!(
            after.changes(&before),
            vec![
                Change::Put("a", &1),
                Change::Delete("d"),
                Change::Put("e", &5),
                Change::Delete("f"),
                Change::Put("g", &7),
            ]
        );
        assert_ne!(after, before);
        assert!(table(&[]).changes(&before).len() == 3);
    }

    #[test]
    fn a_transaction_lists_what_changed_and_rolls_back_all_of_it() {
        let mut t = table(&[("a", 1), ("b", 2), ("c", 3)]);
        t.begin();
        *t.get_mut("a").unwrap() = 1; // touched, unchanged
        *t.get_mut("b").unwrap() = 20;
        t.remove("c");
        t.insert("d".into(), 4);
        assert!(t.get_mut("zz").is_none());
        assert_eq!(
            t.pending(),
            vec![
                Change::Put("b", &20),
                Change::Delete("c"),
                Change::Put("d", &4)
            ]
        );
        t.rollback();
        assert_eq!(t, table(&[("a", 1), ("b", 2), ("c", 3)]));
        assert!(!t.in_transaction());
        assert!(t.pending().is_empty());
        // A row changed twice is kept as it was before the first change.
        t.begin();
        *t.get_mut("a").unwrap() = 5;
        *t.get_mut("a").unwrap() = 6;
        t.retain(|k, _| k != "b");
        assert_eq!(t.pending(), vec![Change::Put("a", &6), Change::Delete("b")]);
        t.commit();
        assert_eq!(t, table(&[("a", 6), ("c", 3)]));
    }

    #[test]
    fn a_change_in_a_transaction_leaves_copies_alone() {
        let mut t = table(&[("a", 1)]);
        let copy = t.clone();
        t.begin();
        *t.get_mut("a").unwrap() = 2;
        assert_eq!(copy["a"], 1);
        assert!(!copy.in_transaction());
        t.commit();
    }

    #[test]
    fn serialises_as_a_map() {
        let t = table(&[("x", 1), ("y", 2)]);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"x":1,"y":2}"#);
        let back: Table<i32> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
    }
}

//! [`Table`]: the plane's map of one kind of record (tasks, instances…),
//! cheap to copy and cheap to compare with a copy. Each row sits behind an
//! `Arc`, so the draft copy a store update works on shares every row with
//! the state it came from until a row is changed, and [`Table::changes`]
//! finds the rows a change touched by pointer before it compares any by
//! value. That keeps a one-task change to a state of many thousand tasks a
//! one-row write (docs/ecs-local.md §6).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Rows keyed by name or id, in key order.
#[derive(Debug)]
pub struct Table<T> {
    rows: BTreeMap<String, Arc<T>>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            rows: BTreeMap::new(),
        }
    }
}

impl<T> Clone for Table<T> {
    fn clone(&self) -> Self {
        Self {
            rows: self.rows.clone(),
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

    /// The row to change; it stops being shared with other copies.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut T> {
        self.rows.get_mut(key).map(Arc::make_mut)
    }

    /// The row to change, made from `T::default()` when missing.
    pub fn get_or_default(&mut self, key: &str) -> &mut T
    where
        T: Default,
    {
        Arc::make_mut(self.rows.entry(key.to_owned()).or_default())
    }

    pub fn insert(&mut self, key: String, value: T) {
        self.rows.insert(key, Arc::new(value));
    }

    pub fn remove(&mut self, key: &str) -> Option<T> {
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

    /// Every row to change; each stops being shared, so prefer
    /// [`Table::get_mut`] on the rows that need it.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.rows.values_mut().map(Arc::make_mut)
    }

    /// Keeps the rows `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &T) -> bool) {
        self.rows.retain(|k, row| keep(k, row));
    }
}

impl<T: PartialEq> Table<T> {
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
    fn serialises_as_a_map() {
        let t = table(&[("x", 1), ("y", 2)]);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"x":1,"y":2}"#);
        let back: Table<i32> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
    }
}

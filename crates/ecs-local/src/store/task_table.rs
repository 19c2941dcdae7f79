//! [`TaskTable`]: the tasks, a [`Table`] that also knows which tasks are
//! placed on each instance and which RunTask `clientToken` started them.
//! Delivering payloads, acking them, placing tasks and answering a repeated
//! RunTask all ask one of those two questions; a scan of every task for
//! each answer made them cost as much as the whole store, call after call,
//! once it held thousands of tasks (docs/ecs-local.md §6.7).
//!
//! The lookups are exact at every moment. An insert or a removal updates
//! them at once. A row handed out by [`TaskTable::get_mut`] may change
//! after the call returns, so it is remembered as unsettled: the next
//! change to the table files it again, and until then a lookup checks that
//! one row itself. A rollback files again every row it put back.

use std::collections::{BTreeSet, HashMap};
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Table, TaskRecord};

/// The tasks, keyed by task id, with their lookups by instance and by
/// client token. Reading goes through [`Deref`] to the [`Table`]; changing
/// goes through the methods here, which keep the lookups current.
#[derive(Debug, Default, Clone)]
pub struct TaskTable {
    rows: Table<TaskRecord>,
    by_instance: Groups,
    by_client_token: Groups,
    /// The row last handed out by [`TaskTable::get_mut`], not filed again
    /// since.
    unsettled: Option<String>,
}

fn instance_of(task: &TaskRecord) -> Option<&str> {
    task.instance_id.as_deref()
}

fn client_token_of(task: &TaskRecord) -> Option<&str> {
    task.client_token.as_deref()
}

impl TaskTable {
    /// The tasks placed on `instance_id`, in task id order.
    pub fn on_instance(&self, instance_id: &str) -> Vec<&TaskRecord> {
        self.members(&self.by_instance, instance_of, instance_id)
    }

    /// The tasks a RunTask with this `clientToken` started, in task id order.
    pub fn with_client_token(&self, token: &str) -> Vec<&TaskRecord> {
        self.members(&self.by_client_token, client_token_of, token)
    }

    fn members(
        &self,
        groups: &Groups,
        field: fn(&TaskRecord) -> Option<&str>,
        group: &str,
    ) -> Vec<&TaskRecord> {
        let unsettled = self.unsettled.as_deref();
        let mut out: Vec<&TaskRecord> = groups
            .members
            .get(group)
            .into_iter()
            .flatten()
            .filter(|key| Some(key.as_str()) != unsettled)
            .filter_map(|key| self.rows.get(key))
            .collect();
        let changed = unsettled.and_then(|key| self.rows.get(key));
        if let Some(row) = changed.filter(|row| field(row) == Some(group)) {
            let at = out.partition_point(|t| t.id < row.id);
            out.insert(at, row);
        }
        out
    }

    pub fn insert(&mut self, key: String, value: TaskRecord) {
        self.settle();
        self.rows.insert(key.clone(), value);
        self.file(&key);
    }

    pub fn remove(&mut self, key: &str) -> Option<TaskRecord> {
        self.settle();
        let removed = self.rows.remove(key);
        self.file(key);
        removed
    }

    /// The row to change; it is filed again at the next change to the table.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut TaskRecord> {
        self.settle();
        if !self.rows.contains_key(key) {
            return None;
        }
        self.unsettled = Some(key.to_owned());
        self.rows.get_mut(key)
    }

    /// Keeps the rows `keep` says yes to.
    pub fn retain(&mut self, keep: impl FnMut(&str, &TaskRecord) -> bool) {
        for key in self.rows.keys_refused(keep) {
            self.remove(&key);
        }
    }

    pub fn begin(&mut self) {
        self.settle();
        self.rows.begin();
    }

    pub fn commit(&mut self) {
        self.settle();
        self.rows.commit();
    }

    /// Puts every touched row back, and files each where it was.
    pub fn rollback(&mut self) {
        self.settle();
        let touched: Vec<String> = self.rows.touched().cloned().collect();
        self.rows.rollback();
        for key in &touched {
            self.file(key);
        }
    }

    fn settle(&mut self) {
        if let Some(key) = self.unsettled.take() {
            self.file(&key);
        }
    }

    /// Files `key` under the instance and token its row has now (nowhere
    /// when the row is gone).
    fn file(&mut self, key: &str) {
        let row = self.rows.get(key);
        self.by_instance.set(key, row.and_then(instance_of));
        self.by_client_token.set(key, row.and_then(client_token_of));
    }
}

impl Deref for TaskTable {
    type Target = Table<TaskRecord>;

    fn deref(&self) -> &Table<TaskRecord> {
        &self.rows
    }
}

impl From<Table<TaskRecord>> for TaskTable {
    fn from(rows: Table<TaskRecord>) -> Self {
        let mut table = TaskTable {
            rows,
            ..TaskTable::default()
        };
        let keys: Vec<String> = table.rows.keys().cloned().collect();
        for key in &keys {
            table.file(key);
        }
        table
    }
}

impl FromIterator<(String, TaskRecord)> for TaskTable {
    fn from_iter<I: IntoIterator<Item = (String, TaskRecord)>>(iter: I) -> Self {
        Table::from_iter(iter).into()
    }
}

/// Two task tables are equal when their rows are; the lookups follow.
impl PartialEq for TaskTable {
    fn eq(&self, other: &Self) -> bool {
        self.rows == other.rows
    }
}

impl Serialize for TaskTable {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.rows.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for TaskTable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Table::deserialize(deserializer).map(TaskTable::from)
    }
}

/// Keys filed under groups, each key under one group at most.
#[derive(Debug, Default, Clone)]
struct Groups {
    members: HashMap<String, BTreeSet<String>>,
    group_of: HashMap<String, String>,
}

impl Groups {
    fn set(&mut self, key: &str, group: Option<&str>) {
        if self.group_of.get(key).map(String::as_str) == group {
            return;
        }
        if let Some(old) = self.group_of.remove(key) {
            if let Some(keys) = self.members.get_mut(&old) {
                keys.remove(key);
                if keys.is_empty() {
                    self.members.remove(&old);
                }
            }
        }
        if let Some(group) = group {
            self.members
                .entry(group.to_owned())
                .or_default()
                .insert(key.to_owned());
            self.group_of.insert(key.to_owned(), group.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn task_on(id: &str, instance: &str) -> TaskRecord {
        serde_json::from_value(serde_json::json!({
            "id": id, "cluster": "default", "instanceId": instance, "family": "f",
            "revision": 1, "demand": {"cpu": 0, "memory": 0}, "task": {}
        }))
        .unwrap()
    }

    fn ids(tasks: Vec<&TaskRecord>) -> Vec<&str> {
        tasks.into_iter().map(|t| t.id.as_str()).collect()
    }

    /// Whatever happened to the table, its lookups answer as a scan of
    /// every row would.
    fn assert_lookups_match_a_scan(table: &TaskTable) {
        let scan = |field: fn(&TaskRecord) -> Option<&str>, group: &str| -> Vec<&str> {
            table
                .values()
                .filter(|t| field(t) == Some(group))
                .map(|t| t.id.as_str())
                .collect()
        };
        for instance in ["i1", "i2", "i3"] {
            let scanned = scan(instance_of, instance);
            assert_eq!(ids(table.on_instance(instance)), scanned, "{instance}");
        }
        for token in ["a", "b"] {
            let scanned = scan(client_token_of, token);
            assert_eq!(ids(table.with_client_token(token)), scanned, "{token}");
        }
        let filed: usize = table.by_instance.members.values().map(BTreeSet::len).sum();
        assert_eq!(
            filed,
            table.by_instance.group_of.len(),
            "nothing filed twice"
        );
    }

    #[test]
    fn lookups_follow_inserts_changes_and_removals() {
        let mut t: TaskTable = [("t1", "i1"), ("t2", "i2"), ("t3", "i1")]
            .into_iter()
            .map(|(id, instance)| (id.to_owned(), task_on(id, instance)))
            .collect();
        assert_eq!(ids(t.on_instance("i1")), ["t1", "t3"]);
        assert_lookups_match_a_scan(&t);

        t.insert("t0".into(), task_on("t0", "i1"));
        t.get_mut("t2").unwrap().client_token = Some("a".into());
        t.get_mut("t3").unwrap().instance_id = Some("i3".into());
        // Not filed again yet: the lookup checks the changed row itself.
        assert_eq!(ids(t.on_instance("i1")), ["t0", "t1"]);
        assert_eq!(ids(t.on_instance("i3")), ["t3"]);
        assert_lookups_match_a_scan(&t);
        t.remove("t1");
        assert_eq!(ids(t.on_instance("i1")), ["t0"]);
        assert_eq!(ids(t.with_client_token("a")), ["t2"]);
        assert_lookups_match_a_scan(&t);

        t.retain(|_, task| task.instance_id.as_deref() != Some("i3"));
        assert!(t.on_instance("i3").is_empty());
        assert!(t.on_instance("nowhere").is_empty());
        assert_lookups_match_a_scan(&t);
    }

    #[test]
    fn a_rollback_puts_the_lookups_back_with_the_rows() {
        let mut t: TaskTable = [("t1", "i1"), ("t2", "i2")]
            .into_iter()
            .map(|(id, instance)| (id.to_owned(), task_on(id, instance)))
            .collect();
        let before = t.clone();
        t.begin();
        t.insert("t3".into(), task_on("t3", "i1"));
        t.remove("t2");
        {
            let t1 = t.get_mut("t1").unwrap();
            t1.client_token = Some("b".into());
            t1.instance_id = Some("i3".into());
        }
        assert_eq!(ids(t.on_instance("i3")), ["t1"]);
        assert_lookups_match_a_scan(&t);
        t.rollback();
        assert_eq!(t, before);
        assert_eq!(ids(t.on_instance("i1")), ["t1"]);
        assert_eq!(ids(t.on_instance("i2")), ["t2"]);
        assert!(t.with_client_token("b").is_empty());
        assert_lookups_match_a_scan(&t);
    }

    #[test]
    fn a_table_read_back_has_its_lookups() {
        let mut t = TaskTable::default();
        t.insert("t1".into(), task_on("t1", "i2"));
        t.get_mut("t1").unwrap().client_token = Some("a".into());
        let json = serde_json::to_string(&t).unwrap();
        let back: TaskTable = serde_json::from_str(&json).unwrap();
        assert_eq!(ids(back.on_instance("i2")), ["t1"]);
        assert_eq!(ids(back.with_client_token("a")), ["t1"]);
        assert_lookups_match_a_scan(&back);
    }
}

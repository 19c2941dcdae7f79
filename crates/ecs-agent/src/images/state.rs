//! What the agent remembers about each image its containers use
//! (docs/engine.md §10.5) and which of them a cleanup cycle may remove
//! (docs/engine.md §10.6): plain data and rules, no I/O, so every rule is
//! tested on its own.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The saved part of an image's state, one record per image ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecord {
    pub image_id: String,
    /// The references containers asked for (`busybox:1.36`, `r.io/app`),
    /// as written in their task definitions.
    pub names: Vec<String>,
    pub size: i64,
    pub pulled_at_ms: i64,
    pub last_used_at_ms: i64,
    /// Set by the first successful pull; drives the `once` behaviour.
    pub pull_succeeded: bool,
}

/// A container that uses an image: the task it belongs to and its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerRef {
    pub task_arn: String,
    pub container_name: String,
}

impl ContainerRef {
    pub fn new(task_arn: &str, container_name: &str) -> Self {
        Self {
            task_arn: task_arn.to_string(),
            container_name: container_name.to_string(),
        }
    }
}

/// One tracked image: its record and the containers using it now (not
/// saved; rebuilt from the engine's tasks at start-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageState {
    pub record: ImageRecord,
    pub users: BTreeSet<ContainerRef>,
}

/// A change the store must make to stay in step with the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Put(ImageRecord),
    Delete(String),
}

/// What a cleanup cycle may remove, besides "no container uses it".
#[derive(Debug, Clone, Default)]
pub struct CleanupRules {
    /// Images pulled less than this long ago stay.
    pub minimum_age_ms: i64,
    /// `name:tag` references that are never removed.
    pub exclusions: Vec<String>,
}

/// Every tracked image, by image ID.
#[derive(Debug, Default)]
pub struct ImageTable {
    images: BTreeMap<String, ImageState>,
}

impl ImageTable {
    /// The table as saved (no users yet).
    pub fn from_records(records: impl IntoIterator<Item = ImageRecord>) -> Self {
        let images = records
            .into_iter()
            .map(|record| {
                (
                    record.image_id.clone(),
                    ImageState {
                        record,
                        users: BTreeSet::new(),
                    },
                )
            })
            .collect();
        Self { images }
    }

    pub fn get(&self, image_id: &str) -> Option<&ImageState> {
        self.images.get(image_id)
    }

    pub fn states(&self) -> impl Iterator<Item = &ImageState> {
        self.images.values()
    }

    /// The image a container reference resolves to, by the name it was
    /// recorded under.
    pub fn by_name(&self, name: &str) -> Option<&ImageState> {
        self.images
            .values()
            .find(|s| s.record.names.iter().any(|n| n == name))
    }

    /// Whether `name` was ever pulled successfully (the `once` rule).
    pub fn pull_succeeded(&self, name: &str) -> bool {
        self.by_name(name).is_some_and(|s| s.record.pull_succeeded)
    }

    /// Records that `user` uses `name`, which Docker says is `image_id`
    /// of `size` bytes. The name leaves any other image it was recorded
    /// for (it was re-tagged); a new image starts with pulled and
    /// last-used times of `now_ms`. Returns what to save: nothing when only
    /// the users changed.
    pub fn add_reference(
        &mut self,
        name: &str,
        image_id: &str,
        size: i64,
        user: ContainerRef,
        pulled: bool,
        now_ms: i64,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        for state in self.images.values_mut() {
            if state.record.image_id != image_id && state.record.names.iter().any(|n| n == name) {
                state.record.names.retain(|n| n != name);
                changes.push(Change::Put(state.record.clone()));
            }
        }
        let before = self.images.get(image_id).map(|s| s.record.clone());
        let state = self
            .images
            .entry(image_id.to_string())
            .or_insert_with(|| ImageState {
                record: ImageRecord {
                    image_id: image_id.to_string(),
                    names: Vec::new(),
                    size,
                    pulled_at_ms: now_ms,
                    last_used_at_ms: now_ms,
                    pull_succeeded: false,
                },
                users: BTreeSet::new(),
            });
        if !state.record.names.iter().any(|n| n == name) {
            state.record.names.push(name.to_string());
        }
        state.record.pull_succeeded |= pulled;
        state.users.insert(user);
        // Users are not saved (a restart rebuilds them), so a record that
        // did not change costs no write: the usual launch of a known image.
        if before.as_ref() != Some(&state.record) {
            changes.push(Change::Put(state.record.clone()));
        }
        changes
    }

    /// `user` no longer uses any image (its task was cleaned up); the
    /// images it used were last used `now_ms`. Returns what to save.
    pub fn remove_reference(&mut self, user: &ContainerRef, now_ms: i64) -> Vec<Change> {
        let mut changes = Vec::new();
        for state in self.images.values_mut() {
            if state.users.remove(user) {
                state.record.last_used_at_ms = now_ms;
                changes.push(Change::Put(state.record.clone()));
            }
        }
        changes
    }

    /// The next image a cleanup cycle should remove: unused, pulled more
    /// than the minimum age ago, no name excluded, not in `skip`; the one
    /// used least recently first. Returns its ID and what to remove from
    /// Docker: each name, or the ID when it has none left.
    pub fn next_candidate(
        &self,
        now_ms: i64,
        rules: &CleanupRules,
        skip: &BTreeSet<String>,
    ) -> Option<(String, Vec<String>)> {
        self.images
            .values()
            .filter(|s| s.users.is_empty())
            .filter(|s| now_ms.saturating_sub(s.record.pulled_at_ms) > rules.minimum_age_ms)
            .filter(|s| !skip.contains(&s.record.image_id))
            .filter(|s| {
                !s.record
                    .names
                    .iter()
                    .any(|n| is_excluded(n, &rules.exclusions))
            })
            .min_by_key(|s| (s.record.last_used_at_ms, s.record.image_id.clone()))
            .map(|s| {
                let targets = if s.record.names.is_empty() {
                    vec![s.record.image_id.clone()]
                } else {
                    s.record.names.clone()
                };
                (s.record.image_id.clone(), targets)
            })
    }

    /// `target` (a name, or the ID itself) is gone from Docker. The image
    /// is forgotten once it has no names left. Returns what to save.
    pub fn forget(&mut self, image_id: &str, target: &str) -> Option<Change> {
        let state = self.images.get_mut(image_id)?;
        state.record.names.retain(|n| n != target);
        if target == image_id || state.record.names.is_empty() {
            self.images.remove(image_id);
            return Some(Change::Delete(image_id.to_string()));
        }
        Some(Change::Put(state.record.clone()))
    }
}

/// Whether `name` is on the exclusion list; `busybox` and
/// `busybox:latest` are the same image.
pub fn is_excluded(name: &str, exclusions: &[String]) -> bool {
    let normal = normalise(name);
    exclusions
        .iter()
        .any(|e| e == name || normalise(e) == normal)
}

fn normalise(name: &str) -> String {
    match crate::docker::split_reference(name) {
        (repo, "") => repo.to_string(),
        (repo, tag) => format!("{repo}:{tag}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn user(n: &str) -> ContainerRef {
        ContainerRef::new("arn:task/1", n)
    }

    fn rules(minimum_age_ms: i64) -> CleanupRules {
        CleanupRules {
            minimum_age_ms,
            exclusions: vec!["keep:me".into(), "amazon/amazon-ecs-agent:latest".into()],
        }
    }

    #[test]
    fn references_create_then_join_an_image_state() {
        let mut t = ImageTable::default();
        let changes = t.add_reference("app:1", "sha256:a", 10, user("c1"), true, 100);
        let a = &t.get("sha256:a").unwrap().record;
        assert_eq!(changes, [Change::Put(a.clone())]);
        assert_eq!(
            (a.pulled_at_ms, a.last_used_at_ms, a.size, a.pull_succeeded),
            (100, 100, 10, true)
        );
        // Another name of the same image, by a container that used the
        // cache: same state, times kept, the pull flag stays set.
        t.add_reference("app:latest", "sha256:a", 10, user("c2"), false, 200);
        let s = t.get("sha256:a").unwrap();
        assert_eq!(s.record.names, ["app:1", "app:latest"]);
        assert_eq!(s.record.pulled_at_ms, 100);
        assert!(s.record.pull_succeeded);
        assert_eq!(s.users.len(), 2);
        assert!(t.pull_succeeded("app:latest"));
        assert!(!t.pull_succeeded("app:2"));
        // A third container on a known name changes only the users, which
        // are not saved: nothing to write.
        let again = t.add_reference("app:1", "sha256:a", 10, user("c3"), true, 300);
        assert!(again.is_empty(), "{again:?}");
        assert_eq!(t.get("sha256:a").unwrap().users.len(), 3);
    }

    #[test]
    fn a_retagged_name_moves_to_its_new_image() {
        let mut t = ImageTable::default();
        t.add_reference("app:1", "sha256:old", 10, user("c1"), true, 100);
        let changes = t.add_reference("app:1", "sha256:new", 20, user("c2"), false, 200);
        assert_eq!(changes.len(), 2, "the old image is saved without the name");
        assert!(t.get("sha256:old").unwrap().record.names.is_empty());
        assert_eq!(t.by_name("app:1").unwrap().record.image_id, "sha256:new");
        // The new image was never pulled under `once`'s rule.
        assert!(!t.pull_succeeded("app:1"));
    }

    #[test]
    fn removing_a_reference_marks_the_image_used_now() {
        let mut t = ImageTable::default();
        t.add_reference("app:1", "sha256:a", 10, user("c1"), true, 100);
        t.add_reference("app:1", "sha256:a", 10, user("c2"), true, 100);
        let changes = t.remove_reference(&user("c1"), 500);
        assert_eq!(changes.len(), 1);
        let s = t.get("sha256:a").unwrap();
        assert_eq!(s.record.last_used_at_ms, 500);
        assert_eq!(s.users.len(), 1);
        assert!(t.remove_reference(&user("nobody"), 600).is_empty());
    }

    #[test]
    fn cleanup_candidates_are_unused_old_and_not_excluded() {
        let mut t = ImageTable::default();
        t.add_reference("used:1", "sha256:used", 1, user("c-used"), true, 0);
        t.add_reference("young:1", "sha256:young", 1, user("c-young"), true, 900);
        t.add_reference("keep:me", "sha256:kept", 1, user("c-kept"), true, 0);
        t.add_reference("keep", "sha256:kept2", 1, user("c-kept2"), true, 0);
        t.add_reference(
            "amazon/amazon-ecs-agent",
            "sha256:agent",
            1,
            user("c-agent"),
            true,
            0,
        );
        t.add_reference("old:1", "sha256:old", 1, user("c-old"), true, 0);
        t.remove_reference(&user("c-old"), 50);
        for c in ["c-young", "c-kept", "c-kept2", "c-agent"] {
            t.remove_reference(&user(c), 100);
        }
        let skip = BTreeSet::new();
        // Minimum age 500 at time 1000: `young` (pulled at 900) stays.
        let (id, targets) = t.next_candidate(1000, &rules(500), &skip).unwrap();
        assert_eq!(
            (id.as_str(), targets),
            ("sha256:old", vec!["old:1".to_string()])
        );
        assert_eq!(t.forget(&id, "old:1"), Some(Change::Delete(id.clone())));
        // `keep` is not `keep:me`; the agent image is excluded untagged too.
        let (id, _) = t.next_candidate(1000, &rules(500), &skip).unwrap();
        assert_eq!(id, "sha256:kept2");
        t.forget(&id, "keep");
        assert_eq!(t.next_candidate(1000, &rules(500), &skip), None);
        // Exactly the minimum age is not old enough; one more ms is.
        assert_eq!(t.next_candidate(1400, &rules(500), &skip), None);
        assert_eq!(
            t.next_candidate(1401, &rules(500), &skip).unwrap().0,
            "sha256:young"
        );
    }

    #[test]
    fn least_recently_used_goes_first_and_skipped_ones_stay() {
        let mut t = ImageTable::default();
        for (name, id, c) in [
            ("a", "sha256:a", "ca"),
            ("b", "sha256:b", "cb"),
            ("c", "sha256:c", "cc"),
        ] {
            t.add_reference(name, id, 1, user(c), true, 0);
        }
        t.remove_reference(&user("cb"), 10);
        t.remove_reference(&user("ca"), 20);
        t.remove_reference(&user("cc"), 30);
        let mut skip = BTreeSet::new();
        let order: Vec<String> = std::iter::from_fn(|| {
            let (id, _) = t.next_candidate(1000, &rules(0), &skip)?;
            skip.insert(id.clone());
            Some(id)
        })
        .collect();
        assert_eq!(order, ["sha256:b", "sha256:a", "sha256:c"]);
    }

    #[test]
    fn an_image_without_names_is_removed_by_id_and_multi_name_images_by_each_name() {
        let mut t = ImageTable::default();
        t.add_reference("x:1", "sha256:x", 1, user("c1"), true, 0);
        t.add_reference("x:1", "sha256:y", 1, user("c2"), true, 0);
        t.add_reference("y:2", "sha256:y", 1, user("c2"), true, 0);
        t.remove_reference(&user("c1"), 1);
        t.remove_reference(&user("c2"), 2);
        let skip = BTreeSet::new();
        let (id, targets) = t.next_candidate(1000, &rules(0), &skip).unwrap();
        assert_eq!(
            (id.as_str(), targets),
            ("sha256:x", vec!["sha256:x".to_string()])
        );
        assert_eq!(t.forget(&id, &id), Some(Change::Delete(id.clone())));
        let (id, targets) = t.next_candidate(1000, &rules(0), &skip).unwrap();
        assert_eq!(targets, ["x:1", "y:2"]);
        assert!(matches!(t.forget(&id, "x:1"), Some(Change::Put(r)) if r.names == ["y:2"]));
        assert_eq!(t.forget(&id, "y:2"), Some(Change::Delete(id.clone())));
        assert!(t.get(&id).is_none());
    }

    #[test]
    fn saved_records_come_back_without_users() {
        let mut t = ImageTable::default();
        t.add_reference("x:1", "sha256:x", 1, user("c1"), true, 0);
        let records: Vec<ImageRecord> = t.states().map(|s| s.record.clone()).collect();
        let json = serde_json::to_string(&records[0]).unwrap();
        assert!(json.contains("\"imageId\":\"sha256:x\""), "{json}");
        let back = ImageTable::from_records(records);
        assert!(back.get("sha256:x").unwrap().users.is_empty());
        assert!(back.pull_succeeded("x:1"));
    }
}

//! The JSON config file (`ECS_AGENT_CONFIG_FILE_PATH`): one object whose keys
//! are the Go field names, matched case-insensitively as Go's decoder does.
//! A value of the wrong type is fatal, exactly like the Go agent.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value;

use super::value::GoDuration;

/// The parsed file, keyed by lower-cased field name.
#[derive(Debug, Default)]
pub struct FileConfig {
    fields: HashMap<String, Value>,
}

/// A key whose value has the wrong JSON type.
#[derive(Debug, thiserror::Error)]
#[error("Error reading cfg json data: field {key}: expected {expected}")]
pub struct FileTypeError {
    pub key: String,
    pub expected: &'static str,
}

impl FileConfig {
    /// A missing or unreadable file, or one holding only whitespace, is no
    /// config at all; a file that is not a JSON object is an error.
    pub fn load(path: &Path) -> Result<Self, String> {
        let Ok(text) = std::fs::read_to_string(path) else {
            return Ok(Self::default());
        };
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("Error reading cfg json data: {e}"))?;
        let Value::Object(map) = value else {
            return Err("Error reading cfg json data: not a JSON object".to_string());
        };
        // Go's decoder lets a later key that matches case-insensitively win.
        let fields = map
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        Ok(Self { fields })
    }

    /// JSON `null` means "not set" for every field type.
    fn get(&self, key: &str) -> Option<&Value> {
        self.fields
            .get(&key.to_ascii_lowercase())
            .filter(|v| !v.is_null())
    }

    fn type_error(key: &str, expected: &'static str) -> FileTypeError {
        FileTypeError {
            key: key.to_string(),
            expected,
        }
    }

    /// Strings; the empty string counts as unset.
    pub fn string(&self, key: &str) -> Result<Option<String>, FileTypeError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Self::type_error(key, "a string")),
        }
    }

    /// bool3 fields: JSON booleans, or the numbers 0 and 1; quoted booleans
    /// are rejected as in Go.
    pub fn bool3(&self, key: &str) -> Result<Option<bool>, FileTypeError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::Number(n)) if n.as_u64() == Some(1) => Ok(Some(true)),
            Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(Some(false)),
            Some(_) => Err(Self::type_error(key, "a boolean")),
        }
    }

    /// Plain bools: only `true` counts as set, because `false` is the zero
    /// value that lets the next source win.
    pub fn plain_bool(&self, key: &str) -> Result<Option<bool>, FileTypeError> {
        match self.get(key) {
            None | Some(Value::Bool(false)) => Ok(None),
            Some(Value::Bool(true)) => Ok(Some(true)),
            Some(_) => Err(Self::type_error(key, "a boolean")),
        }
    }

    /// Durations are integers in nanoseconds in the file; zero is unset.
    pub fn duration(&self, key: &str) -> Result<Option<GoDuration>, FileTypeError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(0) => Ok(None),
                Some(ns) => Ok(Some(GoDuration(ns))),
                None => Err(Self::type_error(key, "an integer of nanoseconds")),
            },
            Some(_) => Err(Self::type_error(key, "an integer of nanoseconds")),
        }
    }

    /// Integers; zero is unset.
    pub fn integer(&self, key: &str) -> Result<Option<i64>, FileTypeError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(0) => Ok(None),
                Some(v) => Ok(Some(v)),
                None => Err(Self::type_error(key, "an integer")),
            },
            Some(_) => Err(Self::type_error(key, "an integer")),
        }
    }

    /// Arrays of ports; an empty array is unset.
    pub fn ports(&self, key: &str) -> Result<Option<Vec<u16>>, FileTypeError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match serde_json::from_value::<Vec<u16>>(v.clone()) {
                Ok(list) if list.is_empty() => Ok(None),
                Ok(list) => Ok(Some(list)),
                Err(_) => Err(Self::type_error(key, "an array of ports")),
            },
        }
    }

    /// Arrays of strings; an empty array is unset.
    pub fn strings(&self, key: &str) -> Result<Option<Vec<String>>, FileTypeError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match serde_json::from_value::<Vec<String>>(v.clone()) {
                Ok(list) if list.is_empty() => Ok(None),
                Ok(list) => Ok(Some(list)),
                Err(_) => Err(Self::type_error(key, "an array of strings")),
            },
        }
    }

    /// Objects of strings; an empty object is unset.
    pub fn string_map(&self, key: &str) -> Result<Option<BTreeMap<String, String>>, FileTypeError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match serde_json::from_value::<BTreeMap<String, String>>(v.clone()) {
                Ok(map) if map.is_empty() => Ok(None),
                Ok(map) => Ok(Some(map)),
                Err(_) => Err(Self::type_error(key, "an object of strings")),
            },
        }
    }

    /// Any JSON value, kept raw (engine auth data).
    pub fn raw(&self, key: &str) -> Option<Value> {
        self.get(key).cloned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_match_case_insensitively() {
        let f =
            FileConfig::parse(r#"{"cluster":"a","TASKCLEANUPWAITDURATION":600000000000}"#).unwrap();
        assert_eq!(f.string("Cluster").unwrap().as_deref(), Some("a"));
        assert_eq!(
            f.duration("TaskCleanupWaitDuration").unwrap(),
            Some(GoDuration(600_000_000_000))
        );
    }

    #[test]
    fn wrong_types_are_errors() {
        let f = FileConfig::parse(
            r#"{"TaskCleanupWaitDuration":"10m","PrivilegedDisabled":"true","Cluster":3}"#,
        )
        .unwrap();
        assert!(f.duration("TaskCleanupWaitDuration").is_err());
        assert!(f.bool3("PrivilegedDisabled").is_err());
        assert!(f.string("Cluster").is_err());
    }

    #[test]
    fn zero_values_are_unset() {
        let f = FileConfig::parse(
            r#"{"ReservedPorts":[],"ReservedMemory":0,"TaskIAMRoleEnabledForNetworkHost":false,"PrivilegedDisabled":false}"#,
        )
        .unwrap();
        assert_eq!(f.ports("ReservedPorts").unwrap(), None);
        assert_eq!(f.integer("ReservedMemory").unwrap(), None);
        assert_eq!(
            f.plain_bool("TaskIAMRoleEnabledForNetworkHost").unwrap(),
            None
        );
        assert_eq!(f.bool3("PrivilegedDisabled").unwrap(), Some(false));
    }

    #[test]
    fn empty_or_missing_files_are_no_config() {
        assert!(FileConfig::parse("  \n").unwrap().fields.is_empty());
        assert!(FileConfig::load(Path::new("/nonexistent/ecs/config.json"))
            .unwrap()
            .fields
            .is_empty());
        assert!(FileConfig::parse("{").is_err());
        assert!(FileConfig::parse("[1]").is_err());
    }
}

//! A systemd service unit read the way systemd reads what these tests need
//! of it: its `Environment=` and `EnvironmentFile=` settings and its
//! `Exec*=` command lines, so that a host without systemd as PID 1 (this
//! one) runs a service with exactly the commands its unit gives.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The `[Service]` section of a unit file.
#[derive(Debug, Default)]
pub struct ServiceUnit {
    /// Every `key=value` of the section, in order (keys repeat).
    pub settings: Vec<(String, String)>,
}

impl ServiceUnit {
    pub fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(Self::parse(&text))
    }

    pub fn parse(text: &str) -> Self {
        let mut unit = Self::default();
        let mut in_service = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_service = line == "[Service]";
                continue;
            }
            if !in_service || line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                unit.settings
                    .push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        unit
    }

    /// Every value of `key`, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.settings
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The one value of `key`.
    pub fn one(&self, key: &str) -> Option<&str> {
        match self.all(key).as_slice() {
            [v] => Some(v),
            _ => None,
        }
    }

    /// The service's environment: `Environment=` first, then each
    /// `EnvironmentFile=` in order (a leading `-` makes a missing file fine).
    pub fn environment(&self) -> Result<BTreeMap<String, String>> {
        let mut env = BTreeMap::new();
        for value in self.all("Environment") {
            if let Some((k, v)) = value.split_once('=') {
                env.insert(k.to_string(), v.to_string());
            }
        }
        for value in self.all("EnvironmentFile") {
            let (optional, path) = match value.strip_prefix('-') {
                Some(p) => (true, p),
                None => (false, value),
            };
            match std::fs::read_to_string(path) {
                Ok(text) => env.extend(ecs_agent::host_setup::parse_env_file(&text)),
                Err(_) if optional => {}
                Err(e) => bail!("EnvironmentFile {path}: {e}"),
            }
        }
        Ok(env)
    }

    /// The command of an `Exec*=` line, with `${VAR}` and `$VAR` expanded
    /// from `env` and the service's environment set. As systemd does, a
    /// word that is `$VAR` alone becomes the value's words (none when it
    /// is empty); `${VAR}` is always one word.
    pub fn command(&self, line: &str, env: &BTreeMap<String, String>) -> Result<Command> {
        let words: Vec<String> = line
            .split_whitespace()
            .flat_map(|w| match split_variable(w) {
                Some(name) => env
                    .get(name)
                    .map(|v| v.split_whitespace().map(str::to_owned).collect())
                    .unwrap_or_default(),
                None => vec![expand(w, env)],
            })
            .collect();
        let Some((program, args)) = words.split_first() else {
            bail!("empty command line");
        };
        // `-` before the program: a failure is ignored (callers decide).
        let program = program.trim_start_matches(['-', '@', '+', '!', ':']);
        let mut cmd = Command::new(PathBuf::from(program));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env);
        Ok(cmd)
    }
}

/// `NAME` when the word is `$NAME` and nothing else.
fn split_variable(word: &str) -> Option<&str> {
    let name = word.strip_prefix('$')?;
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then_some(name)
}

fn expand(word: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = word;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, tail) = if let Some(braced) = after.strip_prefix('{') {
            match braced.split_once('}') {
                Some((n, t)) => (n, t),
                None => (braced, ""),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        out.push_str(env.get(name).map(String::as_str).unwrap_or(""));
        rest = tail;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_the_service_section_and_expands_variables() {
        let unit = ServiceUnit::parse(
            "[Unit]\nDescription=x\n[Service]\n# c\nEnvironment=A=1\nEnvironment=B=two\n\
             EnvironmentFile=-/nonexistent\nExecStart=/bin/echo ${A} $B-x\n[Install]\nWantedBy=y\n",
        );
        assert_eq!(unit.one("ExecStart"), Some("/bin/echo ${A} $B-x"));
        assert_eq!(unit.one("Description"), None);
        let env = unit.environment().unwrap();
        let out = unit
            .command(unit.one("ExecStart").unwrap(), &env)
            .unwrap()
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "1 two-x\n");
    }

    #[test]
    fn a_variable_alone_is_split_into_words_and_an_empty_one_is_none() {
        let run = |value: &str| {
            let unit = ServiceUnit::parse(&format!(
                "[Service]\nEnvironment=OPTS={value}\nExecStart=/bin/sh -c ${{SCRIPT}} sh $OPTS end\n"
            ));
            let mut env = unit.environment().unwrap();
            env.insert("SCRIPT".into(), "echo $#: \"$@\"".into());
            let out = unit
                .command(unit.one("ExecStart").unwrap(), &env)
                .unwrap()
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        assert_eq!(run("--a  --b x"), "4: --a --b x end");
        assert_eq!(run(""), "1: end");
    }
}

//! Engine-wide registry credentials (`ECS_ENGINE_AUTH_TYPE` and
//! `ECS_ENGINE_AUTH_DATA`, docs/engine.md §10.4): parsed once at start-up,
//! then looked up for every image pulled. Credentials never reach a log:
//! every type holding them prints `[redacted]`.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;

use crate::config::Config;
use crate::docker::RegistryAuth;

/// The key Docker Hub credentials are stored under (what `docker login`
/// writes), whatever host name the image uses for Docker Hub.
pub const DOCKER_HUB_KEY: &str = "index.docker.io/v1/";
const DOCKER_HUB_HOSTS: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// Why (part of) the engine-wide credentials cannot be used. The messages
/// name registries, never credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineAuthError {
    #[error("Unknown auth configuration: {0}")]
    UnknownType(String),
    #[error("Could not parse '{0}' type auth config")]
    Unparseable(String),
    #[error("Malformed auth data for registry {registry}: {why}")]
    MalformedEntry { registry: String, why: &'static str },
}

/// One registry's credentials.
#[derive(Clone, PartialEq, Eq, Default)]
struct Credentials {
    username: Option<String>,
    password: Option<String>,
    email: Option<String>,
    server_address: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Credentials by registry key (scheme stripped), as configured.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EngineAuth {
    registries: BTreeMap<String, Credentials>,
}

impl fmt::Debug for EngineAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The registry names are not secret and help when debugging a
        // pull; what is stored for them is.
        f.debug_struct("EngineAuth")
            .field("registries", &self.registries.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl EngineAuth {
    /// From the agent's configuration, logging (without credentials) any
    /// part that cannot be used; what cannot be used means anonymous pulls.
    pub fn from_config(config: &Config) -> Self {
        let (auth, problems) = Self::parse(
            config.engine_auth_type.as_deref(),
            config.engine_auth_data.as_ref().map(|d| &d.0),
        );
        for problem in problems {
            tracing::warn!("{problem}");
        }
        auth
    }

    /// Parses `auth_type` (`docker` or `dockercfg`) and its data. Returns
    /// the usable credentials and every problem found: a bad type or
    /// unparseable data leaves no credentials; a malformed `dockercfg`
    /// entry only loses that entry (as the Go agent does).
    pub fn parse(
        auth_type: Option<&str>,
        data: Option<&serde_json::Value>,
    ) -> (Self, Vec<EngineAuthError>) {
        let auth_type = auth_type.map(str::trim).unwrap_or_default();
        let null = serde_json::Value::Null;
        let data = data.unwrap_or(&null);
        let mut problems = Vec::new();
        let entries = match auth_type {
            "" => return (Self::default(), problems),
            "docker" => match parse_docker(data) {
                Some(entries) => entries,
                None => {
                    problems.push(EngineAuthError::Unparseable(auth_type.into()));
                    return (Self::default(), problems);
                }
            },
            "dockercfg" => match parse_dockercfg(data, &mut problems) {
                Some(entries) => entries,
                None => {
                    problems.push(EngineAuthError::Unparseable(auth_type.into()));
                    return (Self::default(), problems);
                }
            },
            other => {
                problems.push(EngineAuthError::UnknownType(other.into()));
                return (Self::default(), problems);
            }
        };
        let registries = entries
            .into_iter()
            .map(|(key, creds)| (strip_scheme(&key).to_string(), creds))
            .collect();
        (Self { registries }, problems)
    }

    pub fn is_empty(&self) -> bool {
        self.registries.is_empty()
    }

    /// The credentials to pull `image` with, or `None` for an anonymous
    /// pull. Docker Hub images use the `index.docker.io/v1/` key. Other
    /// registries start from the key equal to the host; a longer
    /// `host/path` key that prefixes the image overrides it, so one
    /// registry can hold different credentials per namespace.
    pub fn lookup(&self, image: &str) -> Option<RegistryAuth> {
        let repository = repository_of(image);
        let host = registry_host(repository);
        let key = if DOCKER_HUB_HOSTS.contains(&host) {
            Some(DOCKER_HUB_KEY)
        } else {
            self.key_for_host(host, image)
        }?;
        let c = self.registries.get(key)?;
        Some(RegistryAuth {
            username: c.username.clone(),
            password: c.password.clone(),
            email: c.email.clone(),
            server_address: c.server_address.clone(),
        })
    }

    fn key_for_host<'a>(&'a self, host: &str, image: &str) -> Option<&'a str> {
        let same_host = || {
            self.registries
                .keys()
                .filter(move |k| k.split('/').next() == Some(host))
        };
        let exact = self.registries.get_key_value(host).map(|(k, _)| k);
        let longest_prefix = same_host()
            .filter(|k| k.len() > host.len() && image.starts_with(k.as_str()))
            .max_by_key(|k| k.len());
        // With neither, the Go agent takes whichever key of that host its
        // map iteration yields first; the shortest is the deterministic
        // equivalent.
        let any_of_host = || same_host().min_by_key(|k| (k.len(), k.as_str()));
        longest_prefix
            .or(exact)
            .or_else(any_of_host)
            .map(String::as_str)
    }
}

/// `docker`: `{registry: {username, password, email, auth, serveraddress}}`,
/// member names matched case-insensitively as Go's decoder does. A missing
/// username/password pair is taken from `auth` (base64 `user:pass`) when
/// present. Any entry that is not an object makes the whole value
/// unusable, as in Go.
fn parse_docker(data: &serde_json::Value) -> Option<BTreeMap<String, Credentials>> {
    let mut out = BTreeMap::new();
    for (registry, entry) in data.as_object()? {
        let entry = entry.as_object()?;
        let field = |name: &str| -> Option<String> {
            entry
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.as_str())
                .map(str::to_string)
        };
        let mut creds = Credentials {
            username: field("username"),
            password: field("password"),
            email: field("email"),
            server_address: field("serveraddress"),
        };
        if creds.username.is_none() && creds.password.is_none() {
            if let Some(Ok((user, pass))) = field("auth").map(|a| decode_auth(&a)) {
                creds.username = Some(user);
                creds.password = Some(pass);
            }
        }
        out.insert(registry.clone(), creds);
    }
    Some(out)
}

/// `dockercfg`: `{registry: {auth: base64("user:pass"), email}}`, the
/// content of a legacy `~/.dockercfg`.
fn parse_dockercfg(
    data: &serde_json::Value,
    problems: &mut Vec<EngineAuthError>,
) -> Option<BTreeMap<String, Credentials>> {
    let mut out = BTreeMap::new();
    for (registry, entry) in data.as_object()? {
        let entry = entry.as_object()?;
        let auth = entry
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("auth"))
            .map(|(_, v)| v.as_str().map(str::to_string));
        let auth = match auth {
            Some(Some(a)) => a,
            // Go decodes a missing `auth` as "", which then lacks a ':'.
            None => String::new(),
            Some(None) => return None,
        };
        match decode_auth(&auth) {
            Ok((user, pass)) => {
                out.insert(
                    registry.clone(),
                    Credentials {
                        username: Some(user),
                        password: Some(pass),
                        ..Credentials::default()
                    },
                );
            }
            Err(why) => problems.push(EngineAuthError::MalformedEntry {
                registry: registry.clone(),
                why,
            }),
        }
    }
    Some(out)
}

/// base64 `user:pass` into its two parts.
fn decode_auth(auth: &str) -> Result<(String, String), &'static str> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .map_err(|_| "not base64")?;
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8")?;
    let (user, pass) = text.split_once(':').ok_or("must contain ':'")?;
    Ok((user.to_string(), pass.to_string()))
}

fn strip_scheme(registry: &str) -> &str {
    registry
        .strip_prefix("http://")
        .or_else(|| registry.strip_prefix("https://"))
        .unwrap_or(registry)
}

/// The image without its tag or digest.
fn repository_of(image: &str) -> &str {
    if let Some((repo, _)) = image.split_once('@') {
        return repo;
    }
    match image.rfind(':') {
        Some(i) if !image[i + 1..].contains('/') => &image[..i],
        _ => image,
    }
}

/// The registry host of a repository; `docker.io` when its first path
/// component cannot be a host (no `.` or `:`, and not `localhost`).
fn registry_host(repository: &str) -> &str {
    match repository.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn docker(data: serde_json::Value) -> EngineAuth {
        let (auth, problems) = EngineAuth::parse(Some("docker"), Some(&data));
        assert!(problems.is_empty(), "{problems:?}");
        auth
    }

    fn user_for(auth: &EngineAuth, image: &str) -> Option<String> {
        auth.lookup(image).and_then(|a| a.username)
    }

    #[test]
    fn docker_type_takes_username_password_email() {
        let auth = docker(json!({"my.registry:5000": {
            "username": "u", "password": "p", "email": "e@x", "serveraddress": "s"}}));
        let a = auth.lookup("my.registry:5000/app:1").unwrap();
        assert_eq!(a.username.as_deref(), Some("u"));
        assert_eq!(a.password.as_deref(), Some("p"));
        assert_eq!(a.email.as_deref(), Some("e@x"));
        assert_eq!(a.server_address.as_deref(), Some("s"));
    }

    #[test]
    fn docker_type_member_names_are_case_insensitive_and_auth_fills_in() {
        let auth = docker(json!({
            "a.io": {"Username": "U", "Password": "P"},
            "b.io": {"auth": b64("bu:bp:with-colon")}
        }));
        assert_eq!(user_for(&auth, "a.io/x"), Some("U".into()));
        let b = auth.lookup("b.io/x").unwrap();
        assert_eq!(
            (b.username.as_deref(), b.password.as_deref()),
            (Some("bu"), Some("bp:with-colon"))
        );
    }

    #[test]
    fn dockercfg_auth_is_base64_user_colon_password() {
        let data = json!({"https://my.registry": {"auth": b64("user:pa:ss"), "email": "e@x"}});
        let (auth, problems) = EngineAuth::parse(Some("dockercfg"), Some(&data));
        assert!(problems.is_empty());
        let a = auth.lookup("my.registry/app").unwrap();
        assert_eq!(a.username.as_deref(), Some("user"));
        assert_eq!(a.password.as_deref(), Some("pa:ss"));
    }

    #[test]
    fn malformed_dockercfg_entries_are_dropped_alone() {
        let data = json!({
            "good.io": {"auth": b64("u:p")},
            "nocolon.io": {"auth": b64("justuser")},
            "notbase64.io": {"auth": "%%%"},
            "missing.io": {"email": "e"}
        });
        let (auth, problems) = EngineAuth::parse(Some("dockercfg"), Some(&data));
        assert_eq!(user_for(&auth, "good.io/x"), Some("u".into()));
        assert!(auth.lookup("nocolon.io/x").is_none());
        let registries: Vec<&str> = problems
            .iter()
            .map(|p| match p {
                EngineAuthError::MalformedEntry { registry, .. } => registry.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(registries, ["missing.io", "nocolon.io", "notbase64.io"]);
    }

    #[test]
    fn unknown_type_or_bad_data_means_anonymous_with_a_warning() {
        let data = json!({"a.io": {"username": "u", "password": "p"}});
        let (auth, problems) = EngineAuth::parse(Some("ecr"), Some(&data));
        assert!(auth.is_empty());
        assert_eq!(problems, [EngineAuthError::UnknownType("ecr".into())]);
        assert_eq!(problems[0].to_string(), "Unknown auth configuration: ecr");
        for bad in [
            json!("not an object"),
            json!({"a.io": "string"}),
            json!(null),
        ] {
            let (auth, problems) = EngineAuth::parse(Some("docker"), Some(&bad));
            assert!(auth.is_empty());
            assert_eq!(problems, [EngineAuthError::Unparseable("docker".into())]);
        }
        let (auth, problems) = EngineAuth::parse(Some(" docker "), None);
        assert!(auth.is_empty());
        assert_eq!(problems.len(), 1);
        // No type: nothing configured, nothing to warn about.
        let (auth, problems) = EngineAuth::parse(None, Some(&data));
        assert!(auth.is_empty() && problems.is_empty());
    }

    #[test]
    fn registry_keys_lose_their_scheme() {
        let auth = docker(json!({
            "http://plain.io": {"username": "plain"},
            "https://secure.io:443": {"username": "secure"}
        }));
        assert_eq!(user_for(&auth, "plain.io/x:1"), Some("plain".into()));
        assert_eq!(user_for(&auth, "secure.io:443/x"), Some("secure".into()));
    }

    #[test]
    fn docker_hub_images_use_the_index_key() {
        let auth = docker(json!({
            "https://index.docker.io/v1/": {"username": "hub"},
            "docker.io": {"username": "not-this-one"}
        }));
        for image in [
            "busybox",
            "busybox:1.36",
            "library/busybox",
            "someone/app:2",
            "docker.io/someone/app",
            "index.docker.io/someone/app",
            "registry-1.docker.io/someone/app",
        ] {
            assert_eq!(user_for(&auth, image), Some("hub".into()), "{image}");
        }
        // Without the index key, Docker Hub pulls are anonymous.
        let auth = docker(json!({"docker.io": {"username": "x"}}));
        assert!(auth.lookup("busybox").is_none());
    }

    #[test]
    fn hosts_are_told_apart_from_docker_hub_namespaces() {
        let auth = docker(json!({
            "localhost": {"username": "local"},
            "localhost:5000": {"username": "local5000"},
            "my.registry": {"username": "dotted"},
            "someone": {"username": "never"}
        }));
        assert_eq!(user_for(&auth, "localhost/app"), Some("local".into()));
        assert_eq!(
            user_for(&auth, "localhost:5000/app"),
            Some("local5000".into())
        );
        assert_eq!(user_for(&auth, "my.registry/app:1"), Some("dotted".into()));
        // `someone/app` is a Docker Hub namespace, not a host.
        assert!(auth.lookup("someone/app").is_none());
        // A bare name is never a host either.
        assert!(auth.lookup("localhost").is_none());
    }

    #[test]
    fn exact_host_is_the_default_and_a_longer_matching_path_overrides_it() {
        let auth = docker(json!({
            "r.io": {"username": "host"},
            "r.io/team": {"username": "team"},
            "r.io/team/special": {"username": "special"},
            "r.io/other": {"username": "other"}
        }));
        assert_eq!(user_for(&auth, "r.io/app:1"), Some("host".into()));
        assert_eq!(user_for(&auth, "r.io/team/app:1"), Some("team".into()));
        assert_eq!(
            user_for(&auth, "r.io/team/special/app"),
            Some("special".into())
        );
        assert_eq!(user_for(&auth, "r.io/other/app"), Some("other".into()));
        // Prefixes are plain string prefixes of the image, as in Go.
        assert_eq!(user_for(&auth, "r.io/teamwork/app"), Some("team".into()));
    }

    #[test]
    fn without_an_exact_host_key_a_key_of_that_host_is_used() {
        let auth = docker(json!({
            "r.io/team": {"username": "team"},
            "r.io/team/deeper": {"username": "deeper"}
        }));
        assert_eq!(user_for(&auth, "r.io/team/deeper/x"), Some("deeper".into()));
        assert_eq!(user_for(&auth, "r.io/team/x"), Some("team".into()));
        // No prefix matches: Go takes a key of the same host anyway.
        assert_eq!(user_for(&auth, "r.io/elsewhere/x"), Some("team".into()));
        // Another host, or a host that merely starts the same: anonymous.
        assert!(auth.lookup("q.io/team/x").is_none());
        assert!(auth.lookup("r.io.evil/team/x").is_none());
    }

    #[test]
    fn tags_and_digests_do_not_change_the_host() {
        let auth = docker(json!({"127.0.0.1:5000": {"username": "reg"}}));
        for image in [
            "127.0.0.1:5000/app",
            "127.0.0.1:5000/app:tag",
            "127.0.0.1:5000/app@sha256:abc",
        ] {
            assert_eq!(user_for(&auth, image), Some("reg".into()), "{image}");
        }
        assert!(auth.lookup("127.0.0.1:5001/app").is_none());
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let auth =
            docker(json!({"r.io": {"username": "alice", "password": "hunter2", "email": "a@x"}}));
        let text = format!("{auth:?} {:?}", auth.lookup("r.io/x").unwrap());
        assert!(text.contains("r.io"), "{text}");
        for secret in ["alice", "hunter2", "a@x"] {
            assert!(!text.contains(secret), "{text}");
        }
        let (_, problems) = EngineAuth::parse(
            Some("dockercfg"),
            Some(&json!({"r.io": {"auth": b64("alice-no-colon")}})),
        );
        assert!(!problems[0].to_string().contains("alice"));
    }
}

//! Go's bbolt, the library the Go agent keeps `agent.db` with, must open
//! and accept what `go_state::bolt` writes, and `go_state::bolt` must read
//! what Go's bbolt writes. A small Go program (`tests/go/boltcheck`) is
//! built against Debian's bbolt package and asked about each file: it runs
//! `tx.Check()`, prints the content, then changes the file through bbolt and
//! checks it again.
//!
//! Needs `go` and Debian's `golang-github-coreos-bbolt-dev`, which
//! `scripts/setup` installs; without them these tests fail rather than
//! skip. No network is needed: the build uses the packaged sources in
//! GOPATH mode. To check against another bbolt version, point
//! `BOLTCHECK_GOPATH` at a GOPATH tree holding it (`src/go.etcd.io/bbolt`
//! and `src/golang.org/x/sys`); bbolt 1.4.3 builds this way too.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ecs_agent::go_state::bolt::{self, Buckets};

/// Where Debian's `golang-*-dev` packages put their Go sources.
const DEBIAN_GOPATH: &str = "/usr/share/gocode";
const SETUP_HINT: &str =
    "run scripts/setup, which installs golang-go and golang-github-coreos-bbolt-dev";

/// Builds the checker into `dir` and returns its path.
fn build_checker(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/boltcheck");
    let binary = dir.join("boltcheck");
    // Go's build cache is safe to share between concurrent builds; keeping
    // it in the target dir makes every build after the first take a moment.
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-build-cache");
    let output = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(&source)
        .env("GO111MODULE", "off")
        .env(
            "GOPATH",
            std::env::var_os("BOLTCHECK_GOPATH").unwrap_or_else(|| DEBIAN_GOPATH.into()),
        )
        .env("GOCACHE", &cache)
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .output()
        .unwrap_or_else(|e| panic!("cannot run `go` ({e}): {SETUP_HINT}"));
    assert!(
        output.status.success(),
        "building tests/go/boltcheck failed ({SETUP_HINT}):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    binary
}

struct Checker {
    dir: tempfile::TempDir,
    binary: PathBuf,
}

impl Checker {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let binary = build_checker(dir.path());
        Checker { dir, binary }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `boltcheck check` on `file` and returns the content it printed.
    /// The file is changed and changed back by Go's bbolt on the way.
    fn check(&self, file: &Path) -> Buckets {
        let output = Command::new(&self.binary)
            .arg("check")
            .arg(file)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "Go's bbolt refused {}: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        from_json(&output.stdout)
    }

    /// Writes `buckets` into a new file through Go's bbolt.
    fn create(&self, file: &Path, buckets: &Buckets) {
        let mut child = Command::new(&self.binary)
            .arg("create")
            .arg(file)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&to_json(buckets))
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "Go's bbolt could not write {}: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Encodes `buckets`, has Go check the file, and reads back what Go
    /// left after its own writes.
    fn round_trip(&self, name: &str, buckets: &Buckets) {
        let file = self.path(name);
        bolt::write(&file, buckets).unwrap();
        assert_eq!(&self.check(&file), buckets, "{name}: as Go reads it");
        assert_eq!(
            &bolt::read(&file).unwrap(),
            buckets,
            "{name}: as we read it after Go's writes"
        );
    }
}

/// The checker's JSON: every bucket name, key and value hex-encoded.
fn from_json(bytes: &[u8]) -> Buckets {
    let json: BTreeMap<String, BTreeMap<String, String>> = serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("checker output: {e}: {}", String::from_utf8_lossy(bytes)));
    json.into_iter()
        .map(|(name, keys)| {
            let name = String::from_utf8(hex::decode(name).unwrap()).unwrap();
            let keys = keys
                .into_iter()
                .map(|(k, v)| (hex::decode(k).unwrap(), hex::decode(v).unwrap()))
                .collect();
            (name, keys)
        })
        .collect()
}

fn to_json(buckets: &Buckets) -> Vec<u8> {
    let json: BTreeMap<String, BTreeMap<String, String>> = buckets
        .iter()
        .map(|(name, keys)| {
            let keys = keys
                .iter()
                .map(|(k, v)| (hex::encode(k), hex::encode(v)))
                .collect();
            (hex::encode(name), keys)
        })
        .collect();
    serde_json::to_vec(&json).unwrap()
}

fn fixture() -> Option<PathBuf> {
    let dir = ecs_model::spec::require_or_skip("Go bbolt reading the Go agent's checkpoint")?;
    Some(dir.join("samples/go-agent-state/agent.db"))
}

/// A bucket of `n` keys of every byte pattern order brings, values of
/// `value_len` bytes.
fn many(n: u32, value_len: usize) -> BTreeMap<Vec<u8>, Vec<u8>> {
    (0..n)
        .map(|i| {
            let key = format!("key-{i:07}").into_bytes();
            let value = (0..value_len).map(|j| (i as usize + j) as u8).collect();
            (key, value)
        })
        .collect()
}

fn generated() -> Vec<(&'static str, Buckets)> {
    let mut cases = vec![("empty.db", Buckets::new())];

    let mut one_empty = Buckets::new();
    one_empty.insert("eniattachments".into(), BTreeMap::new());
    cases.push(("one-empty-bucket.db", one_empty));

    // Everything inline, keys with every byte value.
    let mut inline = Buckets::new();
    inline.insert(
        "metadata".into(),
        [
            (b"cluster-name".to_vec(), b"\"default\"".to_vec()),
            (vec![0, 255, 1], vec![]),
            (vec![255; 3], vec![0; 3]),
        ]
        .into_iter()
        .collect(),
    );
    inline.insert("images".into(), many(5, 20));
    cases.push(("inline.db", inline));

    // Leaf pages with overflow (values of 5 KB to 300 KB), a bucket of
    // thousands of keys under branch pages, one over the 0xFFFF keys a
    // single page could count, and small inline buckets beside them.
    let mut big = Buckets::new();
    big.insert("tasks".into(), many(40, 5_000));
    big.insert(
        "containers".into(),
        [
            (b"a".to_vec(), vec![1; 300_000]),
            (b"b".to_vec(), vec![2; 70_000]),
            (b"c".to_vec(), b"small".to_vec()),
        ]
        .into_iter()
        .collect(),
    );
    big.insert("images".into(), many(3_000, 200));
    big.insert("metadata".into(), many(6, 10));
    cases.push(("big.db", big));

    let mut wide = Buckets::new();
    wide.insert("wide".into(), many(70_000, 8));
    cases.push(("wide.db", wide));

    // Many top-level buckets: the root bucket itself spans pages.
    let mut buckets = Buckets::new();
    for i in 0..400 {
        buckets.insert(format!("bucket-{i:04}"), many(i % 7, 30));
    }
    cases.push(("many-buckets.db", buckets));
    cases
}

#[test]
fn go_accepts_the_fixture() {
    let Some(fixture) = fixture() else {
        return;
    };
    let checker = Checker::new();
    let expected = bolt::parse(&std::fs::read(&fixture).unwrap()).unwrap();
    // A copy: the checker writes to the file, and the fixture is read-only.
    let copy = checker.path("agent.db");
    std::fs::copy(&fixture, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600)).unwrap();

    assert_eq!(checker.check(&copy), expected);
    // After Go's two commits the file has free pages and a newer meta.
    assert_eq!(bolt::read(&copy).unwrap(), expected);
}

#[test]
fn go_accepts_the_fixture_re_encoded() {
    let Some(fixture) = fixture() else {
        return;
    };
    let checker = Checker::new();
    let buckets = bolt::read(&fixture).unwrap();
    checker.round_trip("agent.db", &buckets);
}

#[test]
fn go_accepts_generated_files() {
    let checker = Checker::new();
    for (name, buckets) in generated() {
        checker.round_trip(name, &buckets);
    }
}

#[test]
fn we_read_what_go_writes() {
    let checker = Checker::new();
    for (name, buckets) in generated() {
        let file = checker.path(name);
        checker.create(&file, &buckets);
        assert_eq!(bolt::read(&file).unwrap(), buckets, "{name}");
    }
}

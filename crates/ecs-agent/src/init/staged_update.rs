//! Installing an update the agent staged (docs/operations.md §6): the
//! agent downloads the bundle, checks it, names it in `desired-image` and
//! exits 42; the init service then takes the agent binary out of the
//! bundle and puts it in place of the one it runs.
//!
//! The bundle is the agent's container image as `docker save` writes it,
//! the same file whether the agent runs as a process or as a container:
//! `manifest.json` lists the image's layers, each an uncompressed tar, and
//! the binary is the image's `/agent` in the topmost layer that has it. For
//! an agent run as a container, the bundle is loaded into Docker instead.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::update::DESIRED_IMAGE_FILE;
/// Where the image keeps the agent binary.
const BINARY_IN_IMAGE: &str = "agent";
/// Larger than any agent binary; a layer entry above it is not read.
const MAX_BINARY_BYTES: u64 = 512 << 20;

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("no update is staged ({0} is missing)")]
    NothingStaged(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0} names no bundle")]
    EmptyName(PathBuf),
    #[error("{0:?} is not a bundle name in the update directory")]
    BadName(String),
    #[error("the bundle has no usable manifest.json: {0}")]
    Manifest(String),
    #[error("no layer of the bundle holds /{BINARY_IN_IMAGE}")]
    NoBinary,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> UpdateError + '_ {
    move |source| UpdateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The staged bundle named in `dir`'s `desired-image`, if any.
pub fn staged_bundle(dir: &Path) -> Result<PathBuf, UpdateError> {
    let marker = dir.join(DESIRED_IMAGE_FILE);
    let name = match std::fs::read_to_string(&marker) {
        Ok(text) => text.trim().to_string(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(UpdateError::NothingStaged(marker))
        }
        Err(e) => return Err(io_err(&marker)(e)),
    };
    if name.is_empty() {
        return Err(UpdateError::EmptyName(marker));
    }
    // The name comes from a file anyone with the directory could write:
    // only a plain file name in the directory itself is taken.
    if name.contains('/') || name == "." || name == ".." {
        return Err(UpdateError::BadName(name));
    }
    Ok(dir.join(name))
}

/// The image's `/agent` from a `docker save` archive.
pub fn binary_from_bundle(bundle: &Path) -> Result<Vec<u8>, UpdateError> {
    let mut file = File::open(bundle).map_err(io_err(bundle))?;
    let layers = manifest_layers(&mut file).map_err(|e| match e {
        ManifestError::Io(e) => io_err(bundle)(e),
        ManifestError::Bad(why) => UpdateError::Manifest(why),
    })?;
    file.rewind().map_err(io_err(bundle))?;
    let mut found: Option<(usize, Vec<u8>)> = None;
    let mut outer = tar::Archive::new(file);
    for entry in outer.entries().map_err(io_err(bundle))? {
        let entry = entry.map_err(io_err(bundle))?;
        let path = entry.path().map_err(io_err(bundle))?.into_owned();
        let Some(index) = layers.iter().position(|l| Path::new(l) == path) else {
            continue;
        };
        if found.as_ref().is_some_and(|(i, _)| *i > index) {
            continue;
        }
        if let Some(bytes) = binary_in_layer(entry).map_err(io_err(bundle))? {
            found = Some((index, bytes));
        }
    }
    found.map(|(_, bytes)| bytes).ok_or(UpdateError::NoBinary)
}

enum ManifestError {
    Io(io::Error),
    Bad(String),
}

/// The layer paths of the archive's one image, bottom first.
fn manifest_layers(file: &mut File) -> Result<Vec<String>, ManifestError> {
    let mut archive = tar::Archive::new(file);
    for entry in archive.entries().map_err(ManifestError::Io)? {
        let mut entry = entry.map_err(ManifestError::Io)?;
        if entry.path().map_err(ManifestError::Io)?.as_ref() != Path::new("manifest.json") {
            continue;
        }
        let mut text = String::new();
        entry
            .by_ref()
            .take(1 << 20)
            .read_to_string(&mut text)
            .map_err(ManifestError::Io)?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ManifestError::Bad(e.to_string()))?;
        let images = value
            .as_array()
            .ok_or_else(|| ManifestError::Bad("not a list of images".into()))?;
        let [image] = images.as_slice() else {
            return Err(ManifestError::Bad(format!(
                "{} images, expected one",
                images.len()
            )));
        };
        return image["Layers"]
            .as_array()
            .ok_or_else(|| ManifestError::Bad("no Layers".into()))?
            .iter()
            .map(|l| {
                l.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ManifestError::Bad("a layer that is not a path".into()))
            })
            .collect();
    }
    Err(ManifestError::Bad("missing".into()))
}

fn binary_in_layer(layer: impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut archive = tar::Archive::new(layer);
    let mut found = None;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let path = path.strip_prefix("./").unwrap_or(&path);
        if path != Path::new(BINARY_IN_IMAGE)
            || !entry.header().entry_type().is_file()
            || entry.size() > MAX_BINARY_BYTES
        {
            continue;
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes)?;
        found = Some(bytes);
    }
    Ok(found)
}

/// Puts `bytes` in place of the executable at `target` in one rename, so
/// a crash leaves either the old binary or the new one, never half of one.
/// A process running the old binary keeps it until it exits.
pub fn install_binary(target: &Path, bytes: &[u8]) -> Result<(), UpdateError> {
    use std::os::unix::fs::PermissionsExt;
    let mut staging = target.as_os_str().to_owned();
    staging.push(".new");
    let staging = PathBuf::from(staging);
    let write = || -> io::Result<()> {
        let mut file = File::create(&staging)?;
        file.write_all(bytes)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        file.sync_all()?;
        std::fs::rename(&staging, target)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&staging);
        io_err(target)(e)
    })
}

/// Installs the staged update over `target` and forgets it. Returns the
/// bundle it came from.
pub fn apply(update_dir: &Path, target: &Path) -> Result<PathBuf, UpdateError> {
    let bundle = staged_bundle(update_dir)?;
    let bytes = binary_from_bundle(&bundle)?;
    install_binary(target, &bytes)?;
    // Once installed, the update is done: a bundle left behind would be
    // installed again at the next exit 42 of the new agent.
    let marker = update_dir.join(DESIRED_IMAGE_FILE);
    std::fs::remove_file(&marker).map_err(io_err(&marker))?;
    let _ = std::fs::remove_file(&bundle);
    Ok(bundle)
}

/// For an agent run as a container: loads the staged bundle into Docker,
/// which then holds the new image under the names saved in it, and
/// forgets the update. Returns the bundle it came from.
pub async fn load_into_docker(
    update_dir: &Path,
    docker: &crate::docker::DockerClient,
) -> Result<PathBuf, String> {
    let bundle = staged_bundle(update_dir).map_err(|e| e.to_string())?;
    let archive = std::fs::read(&bundle).map_err(|e| format!("{}: {e}", bundle.display()))?;
    docker
        .load_image(archive.into())
        .await
        .map_err(|e| format!("docker load of {}: {e}", bundle.display()))?;
    let marker = update_dir.join(DESIRED_IMAGE_FILE);
    std::fs::remove_file(&marker).map_err(|e| format!("{}: {e}", marker.display()))?;
    let _ = std::fs::remove_file(&bundle);
    Ok(bundle)
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, bytes) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o755);
            header.set_cksum();
            builder.append_data(&mut header, name, *bytes).unwrap();
        }
        builder.into_inner().unwrap()
    }

    /// A `docker save` archive of an image whose layers hold `layers`.
    pub(crate) fn bundle_of(layers: &[&[(&str, &[u8])]]) -> Vec<u8> {
        let names: Vec<String> = (0..layers.len())
            .map(|i| format!("blobs/sha256/{i:064x}"))
            .collect();
        let manifest = serde_json::json!([{
            "Config": "blobs/sha256/config",
            "RepoTags": ["ecs-agent-rs:latest"],
            "Layers": names,
        }])
        .to_string();
        let layer_tars: Vec<Vec<u8>> = layers.iter().map(|l| tar_of(l)).collect();
        let mut entries: Vec<(&str, &[u8])> = names
            .iter()
            .zip(&layer_tars)
            .map(|(n, t)| (n.as_str(), t.as_slice()))
            .collect();
        entries.push(("manifest.json", manifest.as_bytes()));
        tar_of(&entries)
    }

    fn stage(dir: &Path, bundle: &[u8]) {
        std::fs::write(dir.join("abc.ecs-update.tar"), bundle).unwrap();
        std::fs::write(dir.join(DESIRED_IMAGE_FILE), "abc.ecs-update.tar\n").unwrap();
    }

    #[test]
    fn the_topmost_agent_of_the_bundle_replaces_the_binary() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = bundle_of(&[
            &[("agent", b"old"), ("etc/ssl/certs/ca.crt", b"certs")],
            &[("./agent", b"new")],
        ]);
        stage(dir.path(), &bundle);
        let target = dir.path().join("ecs-agent");
        std::fs::write(&target, b"running").unwrap();
        let applied = apply(dir.path(), &target).unwrap();
        assert_eq!(applied, dir.path().join("abc.ecs-update.tar"));
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert!(!dir.path().join(DESIRED_IMAGE_FILE).exists());
        assert!(!applied.exists());
        assert!(matches!(
            apply(dir.path(), &target),
            Err(UpdateError::NothingStaged(_))
        ));
    }

    #[test]
    fn a_bad_bundle_leaves_the_binary_and_the_marker() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("ecs-agent");
        std::fs::write(&target, b"running").unwrap();
        for (bundle, want) in [
            (bundle_of(&[&[("bin/sh", b"x")]]), "no layer"),
            (tar_of(&[("manifest.json", b"{}")]), "not a list"),
            (tar_of(&[("other", b"x")]), "manifest.json: missing"),
            (b"not a tar at all".to_vec(), ""),
        ] {
            stage(dir.path(), &bundle);
            let err = apply(dir.path(), &target).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
            assert_eq!(std::fs::read(&target).unwrap(), b"running");
            assert!(dir.path().join(DESIRED_IMAGE_FILE).exists());
        }
    }

    #[test]
    fn the_marker_must_name_a_file_in_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["../../etc/passwd\n", "/etc/passwd", "..", "\n"] {
            std::fs::write(dir.path().join(DESIRED_IMAGE_FILE), name).unwrap();
            assert!(matches!(
                staged_bundle(dir.path()),
                Err(UpdateError::BadName(_) | UpdateError::EmptyName(_))
            ));
        }
    }
}

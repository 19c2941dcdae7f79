//! Fetching an update tarball (docs/protocols.md §4.9): one HTTP or HTTPS
//! GET through the agent's own client stack (the hyper and rustls-with-ring
//! connector of `crate::https`, so no second TLS library is linked),
//! streamed into the download directory while its SHA-256 is computed.
//!
//! As in the Go agent: proxies come from `HTTP_PROXY` / `HTTPS_PROXY` /
//! `NO_PROXY`, certificates are always verified (`-k` does not apply),
//! redirects are followed, and the whole exchange has 15 minutes.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_http_client::Connector;
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_types::body::SdkBody;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// How long one download may take, connection to last byte.
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Redirects followed before giving up (Go's HTTP client stops at 10).
const MAX_REDIRECTS: usize = 10;

/// Suffix of every downloaded tarball; ecs-init only reads the name that
/// `desired-image` holds.
pub const TARBALL_SUFFIX: &str = ".ecs-update.tar";

/// Why a download failed; the text follows `Unable to download: ` in the
/// nack.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("invalid location {location:?}: {reason}")]
    Location { location: String, reason: String },
    #[error("GET {url}: {source}")]
    Request {
        url: String,
        #[source]
        source: ConnectorError,
    },
    #[error("GET {url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("more than {MAX_REDIRECTS} redirects")]
    Redirects,
    #[error("reading the response body: {0}")]
    Body(String),
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Hashsum validation failed: the tarball's sha256 is {actual}")]
    Checksum { actual: String },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// Deletes a file that was not finished: when the download fails, and
/// when its task is aborted (the future, and with it this guard, is
/// dropped), so no partial tarball is left behind.
struct PartialFile {
    path: Option<PathBuf>,
}

impl PartialFile {
    fn keep(mut self) -> PathBuf {
        self.path.take().unwrap_or_default()
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The HTTP side of updates. The connector (and with it the host's trusted
/// roots) is built on the first download, so an agent that never updates
/// never pays for it.
pub struct Downloader {
    user_agent: String,
    proxy: ProxyConfig,
    connector: OnceLock<Connector>,
}

impl Downloader {
    /// Proxies from the environment, as the Go agent's client has them.
    pub fn new(user_agent: String) -> Self {
        Self::with_proxy(user_agent, ProxyConfig::from_env())
    }

    pub fn with_proxy(user_agent: String, proxy: ProxyConfig) -> Self {
        Self {
            user_agent,
            proxy,
            connector: OnceLock::new(),
        }
    }

    fn connector(&self) -> &Connector {
        self.connector.get_or_init(|| {
            Connector::builder()
                .proxy_config(self.proxy.clone())
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .tls_context(crate::https::tls_context())
                .build()
        })
    }

    /// Downloads `location` into `dir` as `<random hex>.ecs-update.tar`
    /// and checks its SHA-256 (lowercase hex) against `signature`, whose
    /// surrounding whitespace is ignored. Returns the tarball's path; on any
    /// error nothing is left in `dir`.
    pub async fn fetch(
        &self,
        location: &str,
        signature: &str,
        dir: &Path,
    ) -> Result<PathBuf, DownloadError> {
        match tokio::time::timeout(
            DOWNLOAD_TIMEOUT,
            self.fetch_unbounded(location, signature, dir),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(DownloadError::Timeout(DOWNLOAD_TIMEOUT)),
        }
    }

    async fn fetch_unbounded(
        &self,
        location: &str,
        signature: &str,
        dir: &Path,
    ) -> Result<PathBuf, DownloadError> {
        let response = self.get(location).await?;
        let file_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DownloadError::File { path, source }
        };
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(file_error(dir))?;
        let path = dir.join(format!(
            "{}{TARBALL_SUFFIX}",
            hex::encode(rand::random::<[u8; 16]>())
        ));
        let partial = PartialFile {
            path: Some(path.clone()),
        };
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(file_error(&path))?;
        let mut hash = Sha256::new();
        let mut body = Box::pin(response.into_body());
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| DownloadError::Body(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                hash.update(&data);
                file.write_all(&data).await.map_err(file_error(&path))?;
            }
        }
        // On disk before the agent says it is staged: ecs-init loads it
        // after the exit, possibly after a crash.
        file.sync_all().await.map_err(file_error(&path))?;
        let actual = hex::encode(hash.finalize());
        if actual != signature.trim() {
            return Err(DownloadError::Checksum { actual });
        }
        Ok(partial.keep())
    }

    /// GET `location`, following redirects; the first response that is
    /// neither a redirect nor an error.
    async fn get(
        &self,
        location: &str,
    ) -> Result<aws_smithy_runtime_api::http::Response<SdkBody>, DownloadError> {
        let bad_location = |reason: String| DownloadError::Location {
            location: location.to_string(),
            reason,
        };
        let mut url = url::Url::parse(location).map_err(|e| bad_location(e.to_string()))?;
        for _ in 0..=MAX_REDIRECTS {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(bad_location(format!(
                    "scheme {:?} is not http or https",
                    url.scheme()
                )));
            }
            let request = http::Request::builder()
                .method(http::Method::GET)
                .uri(url.as_str())
                .header(http::header::USER_AGENT, &self.user_agent)
                .body(SdkBody::empty())
                .map_err(|e| bad_location(e.to_string()))?;
            let request =
                HttpRequest::try_from(request).map_err(|e| bad_location(e.to_string()))?;
            let response =
                self.connector()
                    .call(request)
                    .await
                    .map_err(|source| DownloadError::Request {
                        url: url.to_string(),
                        source,
                    })?;
            let status = response.status().as_u16();
            let redirect = matches!(status, 301 | 302 | 303 | 307 | 308)
                .then(|| response.headers().get("location"))
                .flatten()
                .and_then(|to| url.join(to).ok());
            match redirect {
                Some(next) => url = next,
                None if (200..300).contains(&status) => return Ok(response),
                None => {
                    return Err(DownloadError::Status {
                        url: url.to_string(),
                        status,
                    })
                }
            }
        }
        Err(DownloadError::Redirects)
    }
}

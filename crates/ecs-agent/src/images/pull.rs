//! One image pull as the Go agent makes it (docs/engine.md §10.3): up to five
//! attempts with backoff, registry authentication errors not retried, the
//! whole thing bounded by `ECS_IMAGE_PULL_TIMEOUT`, and failures named as
//! the backend expects (`CannotPullContainerError`, `DockerTimeoutError`).

use std::future::Future;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::docker::DockerError;

/// Attempts per pull.
pub const MAX_ATTEMPTS: u32 = 5;
const RETRY_MIN: Duration = Duration::from_millis(1100);
const RETRY_MAX: Duration = Duration::from_secs(5);
const RETRY_MULTIPLIER: f64 = 2.0;
const RETRY_JITTER: f64 = 0.2;

/// Why an image could not be pulled; the text is the container's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PullError {
    /// Every attempt together exceeded the pull timeout.
    #[error("DockerTimeoutError: Could not transition to pulled; timed out after waiting {}", go_duration(*.0))]
    Timeout(Duration),
    /// Docker or the registry refused; `auth` when the registry rejected
    /// the credentials (or their absence), which retrying cannot fix.
    #[error("CannotPullContainerError: {message}")]
    Refused { message: String, auth: bool },
    /// The pull stopped making progress (no first message, or no bytes for
    /// the inactivity timeout) and was cancelled.
    #[error("CannotPullContainerError: image pull made no progress for {}", go_duration(*.0))]
    Stalled(Duration),
    /// The registry login the payload asks for could not be made (an ECR
    /// token, or credentials from Secrets Manager); never retried.
    #[error("{name}: {message}")]
    Login { name: &'static str, message: String },
}

impl PullError {
    fn from_docker(image: &str, e: DockerError) -> Self {
        match e {
            DockerError::Timeout(d) => PullError::Stalled(d),
            e => {
                // The daemon's own answers read as the Go agent's do, where
                // the Docker client prefixes them so.
                let message = match &e {
                    DockerError::Api(bollard::errors::Error::DockerResponseServerError {
                        message,
                        ..
                    }) => format!("Error response from daemon: {message}"),
                    other => other.message(),
                };
                let auth = is_auth_error(&message);
                let message = redact_layer_urls(&message, image);
                PullError::Refused { message, auth }
            }
        }
    }

    fn retriable(&self) -> bool {
        !matches!(self, PullError::Refused { auth: true, .. })
    }
}

/// ECR serves image layers from presigned S3 URLs (hosts with
/// `starport-layer-bucket` in them) whose query holds a security token; a
/// failed download can quote one. Each such URL becomes `REDACTED ECR URL
/// related to <image>`, as the Go agent words it (docs/aws-services.md §2).
fn redact_layer_urls(message: &str, image: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find("https") {
        let end = rest[start..]
            .find(char::is_whitespace)
            .map_or(rest.len(), |n| start + n);
        let url = &rest[start..end];
        let leak = url
            .find("starport-layer-bucket")
            .is_some_and(|at| at + "starport-layer-bucket".len() < url.len());
        if leak {
            // A quote right before the URL goes with it.
            let from = if rest[..start].ends_with('"') {
                start - 1
            } else {
                start
            };
            out.push_str(&rest[..from]);
            out.push_str("REDACTED ECR URL related to ");
            out.push_str(image);
        } else {
            out.push_str(&rest[..end]);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Registry answers that mean "these credentials (or none) are not
/// accepted".
fn is_auth_error(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "access denied",
        "access to the resource is denied",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

/// Runs `attempt` (one Docker pull) until it succeeds, fails for good, or
/// `overall` runs out. Each failure is logged with its attempt number.
pub async fn with_retries<F, Fut>(
    image: &str,
    overall: Duration,
    mut attempt: F,
) -> Result<(), PullError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), DockerError>>,
{
    let attempts = async {
        let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX, RETRY_MULTIPLIER, RETRY_JITTER);
        let mut number = 1;
        loop {
            let error = match attempt().await {
                Ok(()) => return Ok(()),
                Err(e) => PullError::from_docker(image, e),
            };
            tracing::warn!(image, attempt = number, error = %error, "image pull attempt failed");
            if number >= MAX_ATTEMPTS || !error.retriable() {
                return Err(error);
            }
            number += 1;
            tokio::time::sleep(backoff.next_delay()).await;
        }
    };
    match tokio::time::timeout(overall, attempts).await {
        Ok(result) => result,
        Err(_) => Err(PullError::Timeout(overall)),
    }
}

/// A duration as Go prints it (`2h0m0s`, `1m30s`, `1.5s`, `300ms`), for
/// error texts that must read like the Go agent's.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    let fraction = |value: u128, unit: u128, suffix: &str| {
        let whole = value / unit;
        let rest = value % unit;
        if rest == 0 {
            return format!("{whole}{suffix}");
        }
        let width = unit.ilog10() as usize;
        let digits = format!("{rest:0width$}");
        format!("{whole}.{}{suffix}", digits.trim_end_matches('0'))
    };
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return fraction(nanos, 1_000, "µs");
    }
    if nanos < 1_000_000_000 {
        return fraction(nanos, 1_000_000, "ms");
    }
    let secs = d.as_secs();
    let (h, m) = (secs / 3600, (secs % 3600) / 60);
    let s = fraction(
        u128::from(secs % 60) * 1_000_000_000 + u128::from(d.subsec_nanos()),
        1_000_000_000,
        "s",
    );
    match (h, m) {
        (0, 0) => s,
        (0, m) => format!("{m}m{s}"),
        (h, m) => format!("{h}h{m}m{s}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    fn daemon_error(message: &str) -> DockerError {
        DockerError::Api(bollard::errors::Error::DockerResponseServerError {
            status_code: 500,
            message: message.into(),
        })
    }

    /// Runs `with_retries` against a fake pull that fails with `errors` in
    /// turn (then succeeds); returns the result, attempts and time taken.
    async fn run(
        errors: Vec<DockerError>,
        overall: Duration,
    ) -> (Result<(), PullError>, u32, Duration) {
        let calls = Arc::new(AtomicU32::new(0));
        let errors = Arc::new(std::sync::Mutex::new(errors.into_iter()));
        let started = tokio::time::Instant::now();
        let result = with_retries("r.io/app", overall, || {
            let calls = calls.clone();
            let errors = errors.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                match errors.lock().unwrap().next() {
                    Some(e) => Err(e),
                    None => Ok(()),
                }
            }
        })
        .await;
        (result, calls.load(Ordering::SeqCst), started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_with_backoff() {
        let hour = Duration::from_secs(3600);
        let (result, calls, took) = run(
            vec![daemon_error("connection refused"), daemon_error("EOF")],
            hour,
        )
        .await;
        assert_eq!(result, Ok(()));
        assert_eq!(calls, 3);
        // 1.1 s then 2.2 s, each plus up to 20 %.
        assert!(
            took >= Duration::from_millis(3300) && took <= Duration::from_millis(3960),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn five_attempts_at_most_with_the_backoff_capped_at_five_seconds() {
        let errors = (0..10)
            .map(|_| daemon_error("dial tcp: connection refused"))
            .collect();
        let (result, calls, took) = run(errors, Duration::from_secs(3600)).await;
        assert_eq!(calls, MAX_ATTEMPTS);
        // 1.1 + 2.2 + 4.4 + 5 s, plus up to 20 %.
        assert!(
            took >= Duration::from_millis(12_700) && took <= Duration::from_millis(15_240),
            "{took:?}"
        );
        let error = result.unwrap_err();
        assert_eq!(
            error.to_string(),
            "CannotPullContainerError: Error response from daemon: dial tcp: connection refused"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn authentication_errors_are_not_retried() {
        for message in [
            "unauthorized: authentication required",
            "Head \"http://127.0.0.1:5000/v2/a/manifests/1\": no basic auth credentials",
            "pull access denied for app, repository does not exist or may require 'docker login': denied: requested access to the resource is denied",
        ] {
            let (result, calls, _) = run(vec![daemon_error(message)], Duration::from_secs(3600)).await;
            assert_eq!(calls, 1, "{message}");
            assert!(matches!(result, Err(PullError::Refused { auth: true, .. })));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_overall_timeout_covers_every_attempt() {
        let errors = (0..10).map(|_| daemon_error("EOF")).collect();
        let (result, calls, took) = run(errors, Duration::from_secs(2)).await;
        assert_eq!(calls, 2);
        assert_eq!(took, Duration::from_secs(2));
        assert_eq!(
            result.unwrap_err().to_string(),
            "DockerTimeoutError: Could not transition to pulled; timed out after waiting 2s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stalled_pulls_are_named_and_retried() {
        let (result, calls, _) = run(
            vec![DockerError::Timeout(Duration::from_secs(60))],
            Duration::from_secs(3600),
        )
        .await;
        assert_eq!((result, calls), (Ok(()), 2));
        assert_eq!(
            PullError::Stalled(Duration::from_secs(60)).to_string(),
            "CannotPullContainerError: image pull made no progress for 1m0s"
        );
        let stream = DockerError::Api(bollard::errors::Error::DockerStreamError {
            error: "manifest unknown".into(),
        });
        assert_eq!(
            PullError::from_docker("i", stream).to_string(),
            "CannotPullContainerError: manifest unknown"
        );
    }

    #[test]
    fn presigned_layer_urls_never_reach_the_reason() {
        let message = "failed to copy: httpReadSeeker: failed open: failed to do request: \
            Get \"https://prod-us-east-1-starport-layer-bucket.s3.us-east-1.amazonaws.com/sha256/ab?X-Amz-Security-Token=SECRET&X-Amz-Signature=x\": dial tcp: i/o timeout";
        let redacted = redact_layer_urls(message, "1.dkr.ecr.us-east-1.amazonaws.com/app:1");
        assert!(!redacted.contains("SECRET"), "{redacted}");
        assert!(
            redacted.contains(
                "Get REDACTED ECR URL related to 1.dkr.ecr.us-east-1.amazonaws.com/app:1 dial tcp"
            ),
            "{redacted}"
        );
        // Other URLs are left alone.
        let other = "Get https://registry.example/v2/: unauthorized";
        assert_eq!(redact_layer_urls(other, "i"), other);
        let stream = DockerError::Api(bollard::errors::Error::DockerStreamError {
            error: "Get https://x.starport-layer-bucket.s3.amazonaws.com/l?t=SECRET failed".into(),
        });
        let reason = PullError::from_docker("img", stream).to_string();
        assert_eq!(
            reason,
            "CannotPullContainerError: Get REDACTED ECR URL related to img failed"
        );
    }

    #[test]
    fn durations_print_like_go() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(5), "5ns"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_millis(300), "300ms"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(2), "2s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(60), "1m0s"),
            (Duration::from_secs(7200), "2h0m0s"),
            (Duration::from_secs(3661), "1h1m1s"),
        ];
        for (d, text) in cases {
            assert_eq!(go_duration(d), text, "{d:?}");
        }
    }
}

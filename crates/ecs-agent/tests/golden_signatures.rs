//! The agent's signers reproduce, byte for byte, the signatures the Go agent
//! sent in the recorded traffic (`spec/samples/`), given the recorded keys and
//! time: the ACS and TCS websocket upgrades and the TCS frame header blocks.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use ecs_agent::signer;

const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const REGION: &str = "us-east-1";

fn credentials(token: Option<&str>) -> Credentials {
    Credentials::new(
        ACCESS_KEY,
        SECRET_KEY,
        token.map(str::to_string),
        None,
        "golden",
    )
}

/// `20261127T201716Z` → SystemTime.
fn amz_time(text: &str) -> SystemTime {
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let t = time::PrimitiveDateTime::parse(text, fmt)
        .unwrap()
        .assume_utc();
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t.unix_timestamp()).unwrap())
}

/// The request line target and the headers of a recorded upgrade request.
struct RecordedUpgrade {
    target: String,
    headers: Vec<(String, String)>,
}

impl RecordedUpgrade {
    fn read(dir: &Path, name: &str) -> Self {
        let bytes = std::fs::read(dir.join("samples").join(name)).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let mut lines = text.split("\r\n");
        let request_line = lines.next().unwrap();
        let target = request_line.split(' ').nth(1).unwrap().to_string();
        let headers = lines
            .take_while(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(": ").unwrap();
                (n.to_string(), v.to_string())
            })
            .collect();
        Self { target, headers }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn url(&self) -> url::Url {
        url::Url::parse(&format!(
            "http://{}{}",
            self.header("Host").unwrap(),
            self.target
        ))
        .unwrap()
    }
}

#[test]
fn websocket_upgrade_signatures_match_the_go_agent() {
    let Some(dir) = ecs_model::spec::require_or_skip("golden upgrade signatures") else {
        return;
    };
    for (file, token) in [
        ("acs-upgrade.request.txt", None),
        (
            "acs-upgrade.reconnect.request.txt",
            Some("FAKE-instance-session-token-IQoJb3JpZ2luX2VjEXAMPLE"),
        ),
        (
            "acs-upgrade.session-token.request.txt",
            Some("FAKE-instance-session-token-IQoJb3JpZ2luX2VjEXAMPLE"),
        ),
        ("tcs-upgrade.request.txt", None),
        (
            "tcs-upgrade.session-token.request.txt",
            Some("FAKE-instance-session-token-IQoJb3JpZ2luX2VjEXAMPLE"),
        ),
    ] {
        let recorded = RecordedUpgrade::read(&dir, file);
        let token = token.filter(|_| recorded.header("X-Amz-Security-Token").is_some());
        let signed = signer::sign_get(
            &recorded.url(),
            b"",
            &credentials(token),
            REGION,
            amz_time(recorded.header("X-Amz-Date").unwrap()),
        )
        .unwrap();
        assert_eq!(
            Some(signed.authorization.as_str()),
            recorded.header("Authorization"),
            "{file}"
        );
        assert_eq!(
            signed.security_token.as_deref(),
            recorded.header("X-Amz-Security-Token")
        );
    }
}

#[test]
fn tcs_frame_header_blocks_match_the_go_agent_byte_for_byte() {
    let Some(dir) = ecs_model::spec::require_or_skip("golden TCS frame signatures") else {
        return;
    };
    let frames = [
        (
            "tcs-publish-metrics.idle.frame.txt",
            "tcs-upgrade.request.txt",
            None,
        ),
        (
            "tcs-publish-metrics.frame.txt",
            "tcs-upgrade.request.txt",
            None,
        ),
        (
            "tcs-publish-health.frame.txt",
            "tcs-upgrade.request.txt",
            None,
        ),
        (
            "tcs-instance-status.frame.txt",
            "tcs-upgrade.request.txt",
            None,
        ),
        (
            "tcs-publish-metrics.session-token.frame.txt",
            "tcs-upgrade.session-token.request.txt",
            Some("FAKE-instance-session-token-IQoJb3JpZ2luX2VjEXAMPLE"),
        ),
    ];
    for (frame_file, upgrade_file, token) in frames {
        let recorded = std::fs::read(dir.join("samples").join(frame_file)).unwrap();
        let text = String::from_utf8(recorded.clone()).unwrap();
        let (head, json) = text.split_once("\r\n\r\n").unwrap();
        let date = head
            .split("\r\n")
            .find_map(|l| l.strip_prefix("X-Amz-Date: "))
            .unwrap();
        let url = RecordedUpgrade::read(&dir, upgrade_file).url();
        let frame =
            signer::signed_tcs_frame(&url, json, &credentials(token), REGION, amz_time(date))
                .unwrap();
        assert_eq!(frame.as_bytes(), recorded.as_slice(), "{frame_file}");
    }
}

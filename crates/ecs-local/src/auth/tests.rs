#![allow(clippy::unwrap_used)]
//! The recorded Go agent requests are SigV4 test vectors (the key pair is
//! the AWS documentation example): each verifies as recorded, and fails
//! once any signed byte changes, with the wrong key, or out of time.

use super::*;

const KEYS: &str = "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n";

struct Recorded {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    fn received(&self) -> Received<'_> {
        Received {
            method: &self.method,
            path_and_query: &self.target,
            headers: &self.headers,
            body: &self.body,
        }
    }
}

fn recorded(name: &str) -> Option<Recorded> {
    let spec = ecs_model::spec::require_or_skip("recorded signed requests")?;
    let bytes = std::fs::read(spec.join("samples").join(name)).unwrap();
    let (head, body) = match bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => (&bytes[..end], bytes[end + 4..].to_vec()),
        None => {
            let end = bytes
                .windows(2)
                .position(|w| w == b"\n\n")
                .unwrap_or(bytes.len());
            (&bytes[..end], Vec::new())
        }
    };
    let head = String::from_utf8(head.to_vec()).unwrap();
    let mut lines = head.lines().map(|l| l.trim_end_matches('\r'));
    let request_line = lines.next().unwrap();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap().to_owned();
    let target = parts.next().unwrap().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(Recorded {
        method,
        target,
        headers,
        body,
    })
}

const SIGNED: [&str; 9] = [
    "register-container-instance.request.http",
    "re-register.request.http",
    "discover-poll-endpoint.request.http",
    "submit-task-state-change.running.request.http",
    "submit-task-state-change.stopped.request.http",
    "acs-upgrade.request.txt",
    "acs-upgrade.session-token.request.txt",
    "acs-upgrade.reconnect.request.txt",
    "tcs-upgrade.request.txt",
];

#[test]
fn every_recorded_request_verifies_as_recorded() {
    let keys = Keys::from_credentials_file(KEYS).unwrap();
    for name in SIGNED {
        let Some(r) = recorded(name) else { return };
        assert_eq!(verify(&keys, &r.received(), None), Ok(()), "{name}");
    }
}

#[test]
fn a_changed_byte_a_wrong_key_or_a_stale_date_is_refused() {
    let keys = Keys::from_credentials_file(KEYS).unwrap();
    let Some(r) = recorded("register-container-instance.request.http") else {
        return;
    };
    // The body.
    let mut body = r.body.clone();
    body[10] ^= 1;
    let changed = Received {
        body: &body,
        ..r.received()
    };
    assert_eq!(verify(&keys, &changed, None), Err(AuthError::BadSignature));
    // A signed header.
    let mut headers = r.headers.clone();
    for (k, v) in headers.iter_mut() {
        if k.eq_ignore_ascii_case("x-amz-target") {
            v.push('x');
        }
    }
    let changed = Received {
        headers: &headers,
        ..r.received()
    };
    assert_eq!(verify(&keys, &changed, None), Err(AuthError::BadSignature));
    // An unsigned header changes nothing.
    let mut headers = r.headers.clone();
    headers.push(("X-Unsigned".into(), "anything".into()));
    let changed = Received {
        headers: &headers,
        ..r.received()
    };
    assert_eq!(verify(&keys, &changed, None), Ok(()));
    // The query of an upgrade.
    let Some(u) = recorded("acs-upgrade.request.txt") else {
        return;
    };
    let target = u.target.replace("seqNum=1", "seqNum=2");
    let changed = Received {
        path_and_query: &target,
        ..u.received()
    };
    assert_eq!(verify(&keys, &changed, None), Err(AuthError::BadSignature));
    // Another secret for the same key, or another key.
    let other = Keys::from_credentials_file(
        "[x]\naws_access_key_id=AKIAIOSFODNN7EXAMPLE\naws_secret_access_key=nope\n",
    )
    .unwrap();
    assert_eq!(
        verify(&other, &r.received(), None),
        Err(AuthError::BadSignature)
    );
    let stranger =
        Keys::from_credentials_file("[x]\naws_access_key_id=AKIDOTHER\naws_secret_access_key=s\n")
            .unwrap();
    assert_eq!(
        verify(&stranger, &r.received(), None),
        Err(AuthError::UnknownKey)
    );
    // The recorded time is fine at the recorded time, not a day later.
    let recorded_at = amz_date("20261127T201716Z").unwrap();
    assert_eq!(
        verify(
            &keys,
            &r.received(),
            Some(recorded_at + Duration::from_secs(60))
        ),
        Ok(())
    );
    assert!(matches!(
        verify(
            &keys,
            &r.received(),
            Some(recorded_at + Duration::from_secs(86_400))
        ),
        Err(AuthError::Expired(_))
    ));
    // No signature at all.
    let headers: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("authorization"))
        .cloned()
        .collect();
    let unsigned = Received {
        headers: &headers,
        ..r.received()
    };
    assert_eq!(verify(&keys, &unsigned, None), Err(AuthError::Missing));
    assert_eq!(
        AuthError::Missing.code(),
        "MissingAuthenticationTokenException"
    );
    assert_eq!(AuthError::UnknownKey.code(), "UnrecognizedClientException");
    assert_eq!(AuthError::BadSignature.code(), "InvalidSignatureException");
}

#[test]
fn credentials_files_give_every_profiles_pair() {
    let keys = Keys::from_credentials_file(
        "# comment\n[default]\naws_access_key_id = A\naws_secret_access_key = a\nregion = x\n\n[profile two]\naws_secret_access_key=b\naws_access_key_id=B\n",
    )
    .unwrap();
    assert_eq!(keys.len(), 2);
    assert!(format!("{keys:?}").contains('A') && !format!("{keys:?}").contains("a\""));
    assert!(Keys::from_credentials_file("[x]\naws_access_key_id=A\n").is_err());
    assert!(Keys::from_credentials_file("").is_err());
    assert!(matches!(
        parse_authorization("AWS4-HMAC-SHA256 Credential=A/x, SignedHeaders=host, Signature=0"),
        Err(AuthError::Malformed(_))
    ));
}

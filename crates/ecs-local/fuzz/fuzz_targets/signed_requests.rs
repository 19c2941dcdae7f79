//! Fuzzes SigV4 verification (`--require-auth`): any bytes, split at NUL
//! bytes into an `Authorization` header, an `X-Amz-Date`, a request target
//! and a body, are verified against a fixed key pair without panicking;
//! nothing made up this way may pass.
#![no_main]

use ecs_local::auth::{verify, Keys, Received};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys = Keys::from_credentials_file(
        "[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = secret\n",
    )
    .expect("a fixed, valid file");
    let mut parts = data.splitn(4, |b| *b == 0);
    let text = |p: Option<&[u8]>| String::from_utf8_lossy(p.unwrap_or_default()).into_owned();
    let authorization = text(parts.next());
    let date = text(parts.next());
    let target = format!("/{}", text(parts.next()));
    let body = parts.next().unwrap_or_default();
    let headers = vec![
        ("Authorization".to_owned(), authorization),
        ("X-Amz-Date".to_owned(), date),
        ("Host".to_owned(), "127.0.0.1:8000".to_owned()),
        (
            "Content-Type".to_owned(),
            "application/x-amz-json-1.1".to_owned(),
        ),
    ];
    let received = Received {
        method: "POST",
        path_and_query: &target,
        headers: &headers,
        body,
    };
    // A signature that matches would need HMAC-SHA256 of the secret.
    assert!(verify(&keys, &received, None).is_err());
});

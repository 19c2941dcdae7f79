//! Fuzzes what a browser sends the web console (docs/ecs-local.md §1.9):
//! any bytes, split at the first NUL byte into an `X-Ecs-Local-Console`
//! header value and a `POST /console/api/login` body, in which `NONCE`
//! stands for a nonce the plane handed out. The header is read for a
//! session token and the body checked against a fixed key pair, without
//! panicking; nothing made up this way may sign in, and the nonce is spent
//! either way.
#![no_main]

use ecs_local::auth::Keys;
use ecs_local::console::{session_token_of, Sessions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys = Keys::from_credentials_file(
        "[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = secret\n",
    )
    .expect("a fixed, valid file");
    let mut parts = data.splitn(2, |b| *b == 0);
    let header = String::from_utf8_lossy(parts.next().unwrap_or_default());
    if let Some(token) = session_token_of(&header) {
        assert_eq!(token.len(), 64);
    }
    let sessions = Sessions::default();
    let nonce = sessions.new_nonce();
    let body = String::from_utf8_lossy(parts.next().unwrap_or_default()).replace("NONCE", &nonce);
    // A signature that matches would need HMAC-SHA256 of the secret.
    assert!(sessions.check_login(&keys, body.as_bytes()).is_err());
    // Whatever the body was, a nonce it named is now spent.
    let again = format!(r#"{{"accessKeyId":"AKIDEXAMPLE","nonce":"{nonce}","signature":"00"}}"#);
    assert!(sessions.check_login(&keys, again.as_bytes()).is_err());
});

//! `--require-auth`: requests signed with a key pair of the credentials
//! file get in; unsigned ones, wrongly signed ones and strangers get the
//! exceptions AWS answers, and change nothing.
#![allow(clippy::unwrap_used)]

mod common;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_sdk_ecs::error::ProvideErrorMetadata;
use common::*;
use ecs_local::auth::Keys;

const FILE: &str = "[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = secret\n\n[ops]\naws_access_key_id = AKIDOPS\naws_secret_access_key = ops-secret\n";

async fn guarded() -> Harness {
    Harness::start_with(|c| c.require_auth = Some(Keys::from_credentials_file(FILE).unwrap())).await
}

fn client_with(h: &Harness, id: &str, secret: &str) -> aws_sdk_ecs::Client {
    let base = h.client();
    let config = base
        .config()
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            id, secret, None, None, "test",
        )))
        .build();
    aws_sdk_ecs::Client::from_conf(config)
}

#[tokio::test]
async fn signed_calls_pass_and_others_are_refused_without_effect() {
    let h = guarded().await;
    // The harness client signs with the default profile's pair; the other
    // profile's pair works too.
    h.client()
        .create_cluster()
        .cluster_name("a")
        .send()
        .await
        .unwrap();
    client_with(&h, "AKIDOPS", "ops-secret")
        .create_cluster()
        .cluster_name("b")
        .send()
        .await
        .unwrap();
    let err = client_with(&h, "AKIDEXAMPLE", "wrong")
        .create_cluster()
        .cluster_name("c")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidSignatureException"), "{err:?}");
    let err = client_with(&h, "AKIDSTRANGER", "secret")
        .create_cluster()
        .cluster_name("d")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("UnrecognizedClientException"), "{err:?}");
    let (status, body) = h.call("CreateCluster", br#"{"clusterName":"e"}"#).await;
    assert_eq!(status, 403);
    assert_eq!(body["__type"], "MissingAuthenticationTokenException");
    h.plane.store().read(|st| {
        assert!(st.clusters.contains_key("a") && st.clusters.contains_key("b"));
        for refused in ["c", "d", "e"] {
            assert!(!st.clusters.contains_key(refused), "{refused} was created");
        }
    });
}

#[tokio::test]
async fn a_recorded_request_replayed_later_is_expired() {
    let Some(spec) = spec() else { return };
    let h = guarded().await;
    let bytes = sample(&spec, "register-container-instance.request.http");
    // Sent as recorded, to this plane (whose keys do not include the
    // recorded one): an unknown key; the recorded key is refused as stale.
    let text = String::from_utf8_lossy(&bytes).replace("127.0.0.1:5100", &h.addr());
    let (status, _, body) = exchange(&h.addr(), text.as_bytes()).await;
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("UnrecognizedClientException"))
    );

    let recorded_keys = Keys::from_credentials_file(
        "[go]\naws_access_key_id=AKIAIOSFODNN7EXAMPLE\naws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
    )
    .unwrap();
    let h = Harness::start_with(|c| c.require_auth = Some(recorded_keys)).await;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (status, _, body) = exchange(&h.addr(), text.as_bytes()).await;
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 403);
    assert_eq!(body["__type"], "InvalidSignatureException");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Signature expired"),
        "{body}"
    );
}

#[tokio::test]
async fn an_unsigned_websocket_upgrade_is_refused() {
    let h = guarded().await;
    for path in [
        "/acs/ws?clusterArn=default&containerInstanceArn=x",
        "/tcs/ws?cluster=default&containerInstance=x",
    ] {
        let url = format!("ws://{}{path}", h.addr());
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403, "{path}");
                let body = String::from_utf8(response.body().clone().unwrap_or_default()).unwrap();
                assert!(
                    body.contains("MissingAuthenticationTokenException"),
                    "{body}"
                );
            }
            other => panic!("{path}: {other:?}"),
        }
    }
}

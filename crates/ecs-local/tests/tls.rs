//! TLS on the plane's one port: the ECS API over HTTPS and ACS over WSS
//! for clients that trust the plane's CA (or the certificate it was given),
//! DiscoverPollEndpoint handing out `https://`, refusals for clients that
//! do not, and the same CA across restarts.
#![allow(clippy::unwrap_used)]

mod common;

use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider, TlsContext, TrustStore};
use common::*;
use ecs_local::tls;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An SDK client trusting only `ca_pem` (nothing at all without one).
fn client_trusting(endpoint: &str, ca_pem: Option<&[u8]>) -> aws_sdk_ecs::Client {
    let mut trust = TrustStore::empty();
    if let Some(pem) = ca_pem {
        trust.add_pem_certificate(pem);
    }
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .tls_context(
            TlsContext::builder()
                .with_trust_store(trust)
                .build()
                .unwrap(),
        )
        .build_https();
    client_at(endpoint, http)
}

fn names() -> Vec<String> {
    tls::default_names("127.0.0.1".parse().unwrap())
}

async fn self_signed_plane() -> (Harness, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let made = tls::self_signed(&data, &names()).unwrap();
    let ca = std::fs::read(&made.ca_path).unwrap();
    let plane = start_in_with(data, |c| c.tls = Some(made.config)).await;
    (Harness { plane, dir }, ca)
}

#[tokio::test]
async fn the_api_and_acs_speak_tls_to_clients_that_trust_the_planes_ca() {
    let (h, ca) = self_signed_plane().await;
    let url = h.plane.endpoint_url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let client = client_trusting(&url, Some(&ca));
    client
        .create_cluster()
        .cluster_name("tls")
        .send()
        .await
        .unwrap();
    let registered = client
        .register_container_instance()
        .cluster("tls")
        .total_resources(
            aws_sdk_ecs::types::Resource::builder()
                .name("MEMORY")
                .r#type("INTEGER")
                .integer_value(1024)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let arn = registered
        .container_instance()
        .and_then(|i| i.container_instance_arn())
        .unwrap()
        .to_owned();
    let endpoints = client
        .discover_poll_endpoint()
        .cluster("tls")
        .container_instance(&arn)
        .send()
        .await
        .unwrap();
    let acs = endpoints.endpoint().unwrap();
    assert_eq!(acs, format!("{url}/acs"));
    assert_eq!(
        endpoints.telemetry_endpoint().unwrap(),
        format!("{url}/tcs/")
    );

    // An agent's ACS websocket over WSS on the same port.
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("clusterArn", "tls")
        .append_pair("containerInstanceArn", &arn)
        .append_pair("sendCredentials", "true")
        .append_pair("seqNum", "1")
        .finish();
    let wss = format!("{}/ws?{query}", acs.replacen("https://", "wss://", 1));
    let (_ws, response) = tokio_tungstenite::connect_async_tls_with_config(
        wss,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(Arc::new(config))),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 101);
    let id = arn.rsplit('/').next().unwrap().to_owned();
    eventually(&h.plane, "agent connected over WSS", |st| {
        st.instances[&id].agent_connected
    })
    .await;
}

#[tokio::test]
async fn clients_that_do_not_trust_it_or_speak_plain_http_are_refused_and_harm_nothing() {
    let (h, ca) = self_signed_plane().await;
    let url = h.plane.endpoint_url();
    let err = client_trusting(&url, None)
        .create_cluster()
        .cluster_name("stranger")
        .send()
        .await
        .unwrap_err();
    let text = format!("{err:?}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut stream = tokio::net::TcpStream::connect(h.addr()).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");

    // A client that says nothing at all holds up no one.
    let _silent = tokio::net::TcpStream::connect(h.addr()).await.unwrap();
    client_trusting(&url, Some(&ca))
        .create_cluster()
        .cluster_name("trusted")
        .send()
        .await
        .unwrap();
    h.plane.store().read(|st| {
        assert!(st.clusters.contains_key("trusted"));
        assert!(!st.clusters.contains_key("stranger"));
    });
}

#[tokio::test]
async fn a_restarted_plane_is_still_trusted_by_clients_of_its_first_ca() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let first = tls::self_signed(&data, &names()).unwrap();
    let ca = std::fs::read(&first.ca_path).unwrap();
    let plane = start_in_with(data.clone(), |c| c.tls = Some(first.config)).await;
    plane.shutdown().await.unwrap();

    let second = tls::self_signed(&data, &names()).unwrap();
    assert!(!second.new_ca);
    let plane = start_in_with(data, |c| c.tls = Some(second.config)).await;
    client_trusting(&plane.endpoint_url(), Some(&ca))
        .list_clusters()
        .send()
        .await
        .unwrap();
    plane.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_certificate_and_key_from_files_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert_path = dir.path().join("server.pem");
    let key_path = dir.path().join("server-key.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let config = tls::from_pem_files(&cert_path, &key_path).unwrap();
    let plane = start_in_with(dir.path().join("data"), |c| c.tls = Some(config)).await;
    let clusters = client_trusting(&plane.endpoint_url(), Some(cert.pem().as_bytes()))
        .list_clusters()
        .send()
        .await
        .unwrap();
    assert_eq!(clusters.cluster_arns().len(), 1);
    plane.shutdown().await.unwrap();
}

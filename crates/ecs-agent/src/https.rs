//! The HTTPS client of every AWS SDK call the agent makes (ECS API,
//! instance metadata, the credential providers): rustls with the ring
//! provider, the same TLS stack as the ACS and TCS websockets, so that only
//! one is linked (docs/footprint.md §1), trusting what crate::trust says.
//!
//! The SDK's own default client would bring aws-lc beside ring; so the
//! workspace leaves that feature off and every SDK configuration is given
//! this client instead. Without one the SDK fails each call at run time,
//! which the tests below would catch.

use std::sync::OnceLock;

use aws_config::provider_config::ProviderConfig;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::http::{
    http_client_fn, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_types::body::SdkBody;

/// Idle connections kept per host, by every client. The reporter sends up
/// to 10 state changes at once in a burst, and a pool keeping all of their
/// connections held each one's buffers and dispatch channel (about 30 KiB)
/// for 90 s after it, in memory allocated amid the burst's
/// (docs/footprint.md §2). Two serve the agent's steady traffic to a host.
pub const IDLE_PER_HOST: usize = 2;

/// One client, and so one connection pool and one parse of the host's
/// trusted roots, for the life of the process.
pub fn client() -> SharedHttpClient {
    static CLIENT: OnceLock<SharedHttpClient> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            aws_smithy_http_client::Builder::new()
                .pool_max_idle_per_host(IDLE_PER_HOST)
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .tls_context(tls_context())
                .build_https()
        })
        .clone()
}

/// The host's roots, and `AWS_CA_BUNDLE`'s when the agent was started with
/// one: for every smithy client and connector the agent builds.
pub fn tls_context() -> TlsContext {
    let mut trust = TrustStore::default();
    if let Some(bundle) = crate::trust::ca_bundle() {
        // Checked when it was loaded: the SDK panics on a bad one.
        trust.add_pem_certificate(bundle.pem());
    }
    TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .unwrap_or_default()
}

/// The ECS API client's: [`client`], or under `-k` one that accepts any
/// server certificate, as the Go agent's ECS client does with `-k`.
pub fn ecs_client(accept_insecure_cert: bool) -> SharedHttpClient {
    static INSECURE: OnceLock<SharedHttpClient> = OnceLock::new();
    if !accept_insecure_cert {
        return client();
    }
    INSECURE
        .get_or_init(|| {
            // The SDK asks for a connector on every attempt; one connector,
            // and so one pool of kept-alive connections, serves them all.
            let connector: OnceLock<SharedHttpConnector> = OnceLock::new();
            http_client_fn(move |settings, _| {
                connector
                    .get_or_init(|| SharedHttpConnector::new(Insecure::new(settings)))
                    .clone()
            })
        })
        .clone()
}

/// Sends SDK requests through hyper with the `-k` rustls configuration of
/// the websockets (crate::trust): the SDK's own client has no way to turn
/// certificate verification off.
#[derive(Debug, Clone)]
struct Insecure {
    client: Option<
        hyper_util::client::legacy::Client<
            hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
            SdkBody,
        >,
    >,
}

impl Insecure {
    fn new(settings: &HttpConnectorSettings) -> Self {
        let Ok(tls) = crate::trust::client_config(true) else {
            return Self { client: None };
        };
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(settings.connect_timeout());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .pool_idle_timeout(std::time::Duration::from_secs(90))
                .pool_max_idle_per_host(IDLE_PER_HOST)
                .build(https);
        Self {
            client: Some(client),
        }
    }
}

impl HttpConnector for Insecure {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.client.clone();
        HttpConnectorFuture::new(async move {
            let client = client
                .ok_or_else(|| ConnectorError::other("no TLS configuration for -k".into(), None))?;
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::user(e.into()))?;
            let response = client
                .request(request)
                .await
                .map_err(|e| ConnectorError::io(e.into()))?;
            response.map(SdkBody::from_body_1_x).try_into().map_err(
                |e: aws_smithy_runtime_api::http::HttpError| ConnectorError::other(e.into(), None),
            )
        })
    }
}

/// What the credential providers and the metadata client are configured
/// with: [`client`] and nothing else changed from the SDK's defaults.
pub fn provider_config() -> ProviderConfig {
    ProviderConfig::default().with_http_client(client())
}

#[cfg(test)]
mod tests {
    use aws_credential_types::provider::SharedCredentialsProvider;
    use aws_credential_types::Credentials;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use crate::ecs_client::EcsClient;
    use crate::imds::InstanceMetadata;

    /// Listens on loopback, answers every request with `status` and no
    /// body, and hands back the first request line of each connection.
    async fn server(status: u16) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]);
                    let _ = tx.send(head.lines().next().unwrap_or_default().to_string());
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        (url, rx)
    }

    /// The workspace links no SDK default client, so an SDK configuration
    /// the agent forgot to give [`super::client`] fails before it sends
    /// anything: each of these would see no request.
    #[tokio::test]
    async fn the_ecs_api_client_sends_through_the_agents_client() {
        let (url, mut requests) = server(400).await;
        let credentials =
            SharedCredentialsProvider::new(Credentials::new("AKID", "secret", None, None, "test"));
        let client = EcsClient::new(Some(&url), "us-east-1", credentials, "test".into(), false);
        let _ = client.create_cluster("default").await;
        // The server records a request before it answers, so a call that
        // has returned either sent one or never will.
        let first = requests.try_recv().expect("no request reached the server");
        assert!(first.starts_with("POST / "), "{first}");
    }

    /// After a burst of calls, the pool keeps [`super::IDLE_PER_HOST`]
    /// connections to the host and closes the rest at once, not 90 s later.
    #[tokio::test]
    async fn a_burst_of_calls_leaves_two_idle_connections() {
        const CALLS: usize = 6;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (closed_tx, mut closed) = tokio::sync::mpsc::unbounded_channel();
        // Every answer waits for all the calls, so each has its own connection.
        let all_in = std::sync::Arc::new(tokio::sync::Barrier::new(CALLS));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (closed_tx, all_in) = (closed_tx.clone(), all_in.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut first = true;
                    // One read per request: each is small and sent at once.
                    while stream.read(&mut buf).await.unwrap_or(0) > 0 {
                        if std::mem::take(&mut first) {
                            all_in.wait().await;
                        }
                        let answer = "HTTP/1.1 400 X\r\ncontent-length: 0\r\n\r\n";
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                    let _ = closed_tx.send(());
                });
            }
        });
        let credentials =
            SharedCredentialsProvider::new(Credentials::new("AKID", "secret", None, None, "test"));
        let client = EcsClient::new(Some(&url), "us-east-1", credentials, "test".into(), false);
        futures_util::future::join_all((0..CALLS).map(|_| client.create_cluster("default"))).await;
        for n in 0..CALLS - super::IDLE_PER_HOST {
            tokio::time::timeout(std::time::Duration::from_secs(30), closed.recv())
                .await
                .unwrap_or_else(|_| panic!("only {n} connections were closed"));
        }
    }

    /// Like [`server`], behind TLS with a certificate no one vouches for.
    async fn tls_server() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("der"),
            )
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("https://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (tx, acceptor) = (tx.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let Ok(mut stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 64 * 1024];
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]);
                    let _ = tx.send(head.lines().next().unwrap_or_default().to_string());
                    let answer = "HTTP/1.1 400 X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        (url, rx)
    }

    /// `-k` reaches a server whose certificate nothing vouches for; without
    /// it the handshake fails and no request is sent.
    #[tokio::test]
    async fn the_ecs_api_client_accepts_any_certificate_only_under_k() {
        let (url, mut requests) = tls_server().await;
        let credentials =
            SharedCredentialsProvider::new(Credentials::new("AKID", "secret", None, None, "test"));
        let verified = EcsClient::new(
            Some(&url),
            "us-east-1",
            credentials.clone(),
            "t".into(),
            false,
        );
        let refused = verified
            .create_cluster("default")
            .await
            .expect_err("an unverifiable certificate was accepted");
        assert!(
            requests.try_recv().is_err(),
            "a request got through: {refused}"
        );
        let insecure = EcsClient::new(Some(&url), "us-east-1", credentials, "t".into(), true);
        let _ = insecure.create_cluster("default").await;
        let first = requests
            .try_recv()
            .expect("no request reached the server under -k");
        assert!(first.starts_with("POST / "), "{first}");
    }

    #[tokio::test]
    async fn the_instance_metadata_client_sends_through_the_agents_client() {
        let (url, mut requests) = server(404).await;
        let metadata = InstanceMetadata::new(true, Some(&url));
        let _ = metadata.identity_document().await;
        // The server records a request before it answers, so a call that
        // has returned either sent one or never will.
        let first = requests.try_recv().expect("no request reached the server");
        assert!(first.starts_with("PUT /latest/api/token "), "{first}");
    }
}

//! The HTTPS client of every AWS SDK call the agent makes (ECS API,
//! instance metadata, the credential providers): rustls with the ring
//! provider, the same TLS stack as the ACS and TCS websockets, so that only
//! one is linked (docs/footprint.md §1).
//!
//! The SDK's own default client would bring aws-lc beside ring; so the
//! workspace leaves that feature off and every SDK configuration is given
//! this client instead. Without one the SDK fails each call at run time,
//! which the tests below would catch.

use std::sync::OnceLock;

use aws_config::provider_config::ProviderConfig;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// One client, and so one connection pool and one parse of the host's
/// trusted roots, for the life of the process.
pub fn client() -> SharedHttpClient {
    static CLIENT: OnceLock<SharedHttpClient> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .build_https()
        })
        .clone()
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
        let client = EcsClient::new(Some(&url), "us-east-1", credentials, "test".into());
        let _ = client.create_cluster("default").await;
        // The server records a request before it answers, so a call that
        // has returned either sent one or never will.
        let first = requests.try_recv().expect("no request reached the server");
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

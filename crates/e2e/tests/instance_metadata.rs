//! Instance metadata is optional, and when used it is reached through the
//! endpoint override: here a fake metadata service on loopback supplies
//! the region and the identity document sent at registration. Nothing is
//! ever sent to 169.254.169.254.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{require_docker, Agent, AgentOptions, Plane};

const DOCUMENT: &str = r#"{"accountId":"123456789012","availabilityZone":"us-east-1a","instanceId":"i-0fa4e5c0ffee00001","region":"us-east-1","instanceType":"t3.medium"}"#;

/// Serves IMDSv2: a token, then the identity document and signature.
/// Each connection on a thread of its own, as a real metadata service
/// serves them at once: an HTTP client may open a connection and leave it
/// idle in its pool, which a server taking one connection at a time would
/// wait on while every later request timed out.
fn fake_imds() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let log = log.clone();
            std::thread::spawn(move || answer_imds(stream, &log));
        }
    });
    (url, seen)
}

/// One request on `stream`, answered, then the connection closed.
fn answer_imds(mut stream: std::net::TcpStream, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut content_length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; content_length];
    let _ = reader.read_exact(&mut body);
    let target = request_line
        .split(' ')
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    log.lock().unwrap().push(target.clone());
    let body = match target.as_str() {
        "PUT /latest/api/token" => "fake-imds-token",
        "GET /latest/dynamic/instance-identity/document" => DOCUMENT,
        "GET /latest/dynamic/instance-identity/signature" => "ZmFrZS1zaWduYXR1cmU=",
        _ => {
            let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            return;
        }
    };
    // A token response must say how long the token lives.
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-aws-ec2-metadata-token-ttl-seconds: 21600\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

#[test]
fn region_and_identity_come_from_the_metadata_override() {
    require_docker();
    let (imds_url, seen) = fake_imds();
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(&dir.path().join("plane")).unwrap();
    let options = AgentOptions::new(&dir.path().join("agent"))
        .without("AWS_EC2_METADATA_DISABLED")
        .without("AWS_DEFAULT_REGION")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds_url);
    let agent = Agent::start(&plane, &options).unwrap();
    let instance = plane
        .cli()
        .wait_connected_instance("default", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}\nthe agent's log:\n{}", agent.log_text()));
    assert_eq!(
        instance["ec2InstanceId"], "i-0fa4e5c0ffee00001",
        "{instance}"
    );
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.contains(&"GET /latest/dynamic/instance-identity/document".to_string()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&"GET /latest/dynamic/instance-identity/signature".to_string()),
        "{seen:?}"
    );
}

#[test]
fn without_metadata_or_region_the_agent_exits_with_a_clear_error() {
    require_docker();
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(&dir.path().join("plane")).unwrap();
    let options = AgentOptions::new(&dir.path().join("agent")).without("AWS_DEFAULT_REGION");
    let mut agent = Agent::start(&plane, &options).unwrap();
    let code = e2e::wait_for("the agent to exit", Duration::from_secs(30), || {
        agent.exit_code()
    })
    .unwrap();
    assert_eq!(code, Some(1));
    assert!(
        agent.log_text().contains("AWSRegion"),
        "{}",
        agent.log_text()
    );
}

#[test]
fn sigterm_is_a_clean_exit() {
    require_docker();
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(&dir.path().join("plane")).unwrap();
    let agent = Agent::start(&plane, &AgentOptions::new(&dir.path().join("agent"))).unwrap();
    plane
        .cli()
        .wait_connected_instance("default", Duration::from_secs(60))
        .unwrap();
    let log = agent.log.clone();
    assert_eq!(agent.terminate(Duration::from_secs(10)).unwrap(), Some(0));
    let text = std::fs::read_to_string(log).unwrap();
    assert!(
        text.contains("Agent received termination signal: terminated"),
        "{text}"
    );
}

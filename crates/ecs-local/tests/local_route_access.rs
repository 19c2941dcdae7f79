//! `/_local/v1/task-credentials` shows secrets, so only callers on this
//! host's loopback interface get them. Here the plane listens on every
//! interface and is called twice: from loopback, and from one of this
//! host's own non-loopback addresses (Docker's bridge when there is one),
//! which is what a container or another machine looks like to it. Traffic
//! to the host's own address never leaves the host.
#![allow(clippy::unwrap_used)]

mod common;

use common::split_response;
use ecs_local::{Config, Plane};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The IPv4 addresses of this host's own interfaces, from the kernel's
/// routing trie (`/32 host LOCAL` entries), loopback left out.
fn local_addresses() -> Vec<Ipv4Addr> {
    let trie = std::fs::read_to_string("/proc/net/fib_trie").unwrap();
    let mut found = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in trie.lines() {
        let line = line.trim();
        if let Some(ip) = line.strip_prefix("|-- ") {
            last = ip.parse().ok();
        } else if line.starts_with("/32 host LOCAL") {
            if let Some(ip) = last.filter(|ip| !ip.is_loopback() && !found.contains(ip)) {
                found.push(ip);
            }
        }
    }
    found
}

/// The network and mask of `docker0`'s route, from `/proc/net/route`.
fn docker0_network() -> Option<(u32, u32)> {
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    let hex = |h: &str| {
        u32::from_str_radix(h, 16)
            .ok()
            .map(|v| u32::from_be_bytes(v.to_ne_bytes()))
    };
    routes.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.first() != Some(&"docker0") {
            return None;
        }
        let (network, mask) = (hex(fields.get(1)?)?, hex(fields.get(7)?)?);
        (mask != 0).then_some((network, mask))
    })
}

/// A non-loopback address of this host: Docker's bridge address when
/// there is one, else the first other.
fn off_loopback_address() -> Ipv4Addr {
    let addresses = local_addresses();
    let on_bridge = docker0_network().and_then(|(network, mask)| {
        addresses
            .iter()
            .copied()
            .find(|ip| u32::from(*ip) & mask == network)
    });
    on_bridge
        .or_else(|| addresses.first().copied())
        .expect("this host has no non-loopback IPv4 address to call from")
}

async fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let (status, _, body) = split_response(&response);
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn task_credentials_are_refused_to_callers_off_the_loopback_interface() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let plane = Plane::start(listener, Config::new(dir.path().join("data")))
        .await
        .unwrap();
    let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let outside = SocketAddr::new(IpAddr::V4(off_loopback_address()), port);

    // From loopback the route answers: no such task, no parameter.
    let (status, body) = get(loopback, "/_local/v1/task-credentials?task=nope").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "TaskNotFound", "{body}");
    let (status, body) = get(loopback, "/_local/v1/task-credentials").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "MissingParameter", "{body}");

    // From anywhere else it is refused before the query is even read.
    for path in [
        "/_local/v1/task-credentials?task=nope",
        "/_local/v1/task-credentials",
    ] {
        let (status, body) = get(outside, path).await;
        assert_eq!(status, 403, "{outside} {path}: {body}");
        assert_eq!(body["error"], "Forbidden", "{body}");
    }

    // The same caller still reaches the rest of the plane: the refusal is
    // about this route, not the address.
    let (status, _, body) = common::post(
        &outside.to_string(),
        &format!("{}ListClusters", common::TARGET),
        b"{}",
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    plane.shutdown().await.unwrap();
}

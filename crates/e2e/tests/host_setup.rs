//! `ecs-agent host-setup` / `host-teardown` on this host (they need root):
//! the sysctl and iptables rules ecs-init would install, each exactly once
//! however often set-up runs; `169.254.170.2:80` reaching a listener on
//! `127.0.0.1:51679` from the host itself; and tear-down leaving nothing
//! behind. Every test holds the harness's host-routing lock, so no other
//! test changes the rules meanwhile.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{agent_host_command, host_routing, host_routing_lock};

/// The rules as `iptables -S` prints them: (table, line).
const PREROUTING: (&str, &str) = (
    "nat",
    "-A PREROUTING -d 169.254.170.2/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 127.0.0.1:51679",
);
const OUTPUT: (&str, &str) = (
    "nat",
    "-A OUTPUT -d 169.254.170.2/32 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 51679",
);
const LOCALHOST_FILTER: (&str, &str) = (
    "filter",
    "-A INPUT ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
);
const INTROSPECTION_DROP: &str = "-A INPUT ! -i lo -p tcp -m tcp --dport 51678 -j DROP";
const INTROSPECTION_ACCEPT: &str = "-A INPUT -i docker0 -p tcp -m tcp --dport 51678 -j ACCEPT";

const DEFAULTS: &[(&str, &str)] = &[
    ("ECS_ALLOW_OFFHOST_INTROSPECTION_ACCESS", "false"),
    ("ECS_SKIP_LOCALHOST_TRAFFIC_FILTER", "false"),
];

fn rules(program: &str, table: &str) -> Vec<String> {
    let out = Command::new(program)
        .args(["-w", "-t", table, "-S"])
        .output()
        .unwrap_or_else(|e| panic!("{program} cannot run (scripts/setup installs it): {e}"));
    assert!(
        out.status.success(),
        "{program} -t {table} -S: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn count(program: &str, (table, line): (&str, &str)) -> usize {
    rules(program, table).iter().filter(|l| *l == line).count()
}

fn sysctl(key: &str) -> String {
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

fn docker0() -> bool {
    Path::new("/sys/class/net/docker0").exists()
}

/// ip6tables rules are expected when the kernel has IPv6 and the tool is
/// installed, as ecs-init decides.
fn ip6tables() -> bool {
    Path::new("/proc/sys/net/ipv6").exists()
        && Command::new("ip6tables")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
}

/// The lines of `out` that start with `word:`.
fn with_status<'a>(out: &'a str, word: &str) -> Vec<&'a str> {
    out.lines()
        .filter(|l| l.starts_with(&format!("{word}:")))
        .collect()
}

/// Asserts every host-setup rule is there exactly `n` times (0 or 1).
fn assert_all_rules(n: usize, introspection: bool) {
    for rule in [PREROUTING, LOCALHOST_FILTER, OUTPUT] {
        assert_eq!(count("iptables", rule), n, "{rule:?}");
    }
    let mut programs = vec!["iptables"];
    if ip6tables() {
        programs.push("ip6tables");
    }
    let expected = if introspection { n } else { 0 };
    for program in programs {
        assert_eq!(
            count(program, ("filter", INTROSPECTION_DROP)),
            expected,
            "{program}: {INTROSPECTION_DROP}"
        );
        if docker0() {
            assert_eq!(
                count(program, ("filter", INTROSPECTION_ACCEPT)),
                expected,
                "{program}: {INTROSPECTION_ACCEPT}"
            );
        }
    }
}

fn assert_nothing_left() {
    assert_all_rules(0, true);
    for program in ["iptables", "ip6tables"] {
        if program == "ip6tables" && !ip6tables() {
            continue;
        }
        for table in ["nat", "filter"] {
            if program == "ip6tables" && table == "nat" {
                continue;
            }
            let text = rules(program, table).join("\n");
            assert!(
                !text.contains("169.254.170.2"),
                "{program} {table}:\n{text}"
            );
            assert!(!text.contains("51678"), "{program} {table}:\n{text}");
            assert!(!text.contains("51679"), "{program} {table}:\n{text}");
        }
    }
}

/// Runs `host-teardown` when dropped, so a failing test leaves nothing
/// behind. Declared after the lock guard, so it runs before the lock goes.
struct TeardownOnDrop;

impl Drop for TeardownOnDrop {
    fn drop(&mut self) {
        if let Err(e) = agent_host_command("host-teardown", DEFAULTS) {
            eprintln!("clean-up: {e:#}");
        }
    }
}

/// Binds `127.0.0.1:51679`, waiting a while if an agent of some other test
/// still holds it.
fn bind_credentials_port() -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match TcpListener::bind("127.0.0.1:51679") {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline => {
                eprintln!("127.0.0.1:51679 is busy ({e}); waiting");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("127.0.0.1:51679 stayed busy for 60 s: {e}"),
        }
    }
}

/// Answers one HTTP request on `listener` with `body`; returns the request
/// head it read.
fn serve_once(listener: TcpListener, body: &'static str) -> std::thread::JoinHandle<String> {
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut stream, _) = loop {
            match listener.accept() {
                Ok(s) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "nobody connected to 51679");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut byte).unwrap();
            assert_eq!(n, 1, "the client closed before the end of the request");
            head.push(byte[0]);
        }
        write!(
            stream,
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        String::from_utf8_lossy(&head).into_owned()
    })
}

/// A plain HTTP GET to `http://169.254.170.2/`; the whole response.
fn get_credentials_proxy() -> String {
    let addr: SocketAddr = "169.254.170.2:80".parse().unwrap();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .expect("connecting to 169.254.170.2:80 (redirected to 127.0.0.1:51679)");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: 169.254.170.2\r\nUser-Agent: e2e-host-setup\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn host_setup_routes_the_credentials_address_and_teardown_removes_it() {
    let _lock = host_routing_lock().unwrap();
    let _cleanup = TeardownOnDrop;
    // A run that died half-way must not count against this one.
    agent_host_command("host-teardown", DEFAULTS).unwrap();
    assert_nothing_left();
    let default_localnet = sysctl("net.ipv4.conf.default.route_localnet");
    assert_eq!(sysctl("net.ipv4.conf.all.route_localnet"), default_localnet);

    let first = agent_host_command("host-setup", DEFAULTS).unwrap();
    assert!(
        first.contains(
            "added: iptables -t nat -A OUTPUT -p tcp -d 169.254.170.2 --dport 80 -j REDIRECT --to-ports 51679"
        ),
        "{first}"
    );
    assert!(with_status(&first, "already present").is_empty(), "{first}");
    assert!(
        first.contains("sysctl net.ipv4.conf.all.route_localnet=1"),
        "{first}"
    );
    let second = agent_host_command("host-setup", DEFAULTS).unwrap();
    assert!(with_status(&second, "added").is_empty(), "{second}");
    assert_eq!(
        with_status(&second, "already present").len(),
        with_status(&first, "added").len(),
        "second run:\n{second}\nfirst run:\n{first}"
    );
    assert!(
        second.contains("already set: sysctl net.ipv4.conf.all.route_localnet=1"),
        "{second}"
    );
    assert_all_rules(1, true);
    assert_eq!(sysctl("net.ipv4.conf.all.route_localnet"), "1");
    if Path::new("/proc/sys/net/ipv6/conf/docker0/accept_ra").exists() {
        assert_eq!(sysctl("net.ipv6.conf.docker0.accept_ra"), "0");
    }
    if docker0() {
        // Inserted after the DROP, the ACCEPT sits above it.
        let input = rules("iptables", "filter");
        let at = |line: &str| input.iter().position(|l| l == line).unwrap();
        assert!(
            at(INTROSPECTION_ACCEPT) < at(INTROSPECTION_DROP),
            "{input:#?}"
        );
    }

    // The host reaches 169.254.170.2:80 as 127.0.0.1:51679. Nothing may
    // leave the host: connect only while the redirect is in place.
    let server = serve_once(bind_credentials_port(), "credentials-proxy-ok");
    assert_eq!(
        count("iptables", OUTPUT),
        1,
        "the redirect must be in place"
    );
    let response = get_credentials_proxy();
    let request = server.join().unwrap();
    assert!(response.starts_with("HTTP/1.0 200 OK"), "{response}");
    assert!(response.ends_with("credentials-proxy-ok"), "{response}");
    assert!(request.starts_with("GET / HTTP/1.0\r\n"), "{request}");
    assert!(request.contains("Host: 169.254.170.2\r\n"), "{request}");

    let first = agent_host_command("host-teardown", DEFAULTS).unwrap();
    assert!(
        first.contains(
            "removed: iptables -t nat -D PREROUTING -p tcp -d 169.254.170.2 --dport 80 -j DNAT --to-destination 127.0.0.1:51679"
        ),
        "{first}"
    );
    assert!(
        first.contains(&format!(
            "restored: sysctl net.ipv4.conf.all.route_localnet={default_localnet}"
        )) || default_localnet == "1",
        "{first}"
    );
    let second = agent_host_command("host-teardown", DEFAULTS).unwrap();
    assert!(with_status(&second, "removed").is_empty(), "{second}");
    assert!(!with_status(&second, "absent").is_empty(), "{second}");
    assert_nothing_left();
    assert_eq!(sysctl("net.ipv4.conf.all.route_localnet"), default_localnet);
}

#[test]
fn switches_leave_out_the_introspection_and_localhost_rules() {
    let _lock = host_routing_lock().unwrap();
    let _cleanup = TeardownOnDrop;
    agent_host_command("host-teardown", DEFAULTS).unwrap();

    let env = [("ECS_ALLOW_OFFHOST_INTROSPECTION_ACCESS", "true")];
    let out = agent_host_command("host-setup", &env).unwrap();
    assert!(!out.contains("51678"), "{out}");
    assert_all_rules(1, false);
    agent_host_command("host-teardown", &env).unwrap();
    assert_nothing_left();

    let env = [
        ("ECS_ALLOW_OFFHOST_INTROSPECTION_ACCESS", "true"),
        ("ECS_SKIP_LOCALHOST_TRAFFIC_FILTER", "true"),
    ];
    agent_host_command("host-setup", &env).unwrap();
    assert_eq!(count("iptables", PREROUTING), 1);
    assert_eq!(count("iptables", OUTPUT), 1);
    assert_eq!(count("iptables", LOCALHOST_FILTER), 0);
    assert_eq!(count("iptables", ("filter", INTROSPECTION_DROP)), 0);
    // Tear-down removes every rule set-up could have added, whatever the
    // switches say now.
    agent_host_command("host-setup", DEFAULTS).unwrap();
    assert_all_rules(1, true);
    agent_host_command("host-teardown", &env).unwrap();
    assert_nothing_left();
}

#[test]
fn host_routing_guard_sets_up_then_tears_down() {
    let default_localnet = {
        let _lock = host_routing_lock().unwrap();
        sysctl("net.ipv4.conf.default.route_localnet")
    };
    {
        let routing = host_routing().unwrap();
        assert!(routing.setup_output.contains("host set-up done"));
        assert_all_rules(1, true);
        assert_eq!(sysctl("net.ipv4.conf.all.route_localnet"), "1");
    }
    let _lock = host_routing_lock().unwrap();
    assert_nothing_left();
    assert_eq!(sysctl("net.ipv4.conf.all.route_localnet"), default_localnet);
}

#[test]
fn commands_refuse_extra_arguments() {
    let out = Command::new(&e2e::binaries().agent)
        .args(["host-setup", "now"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("host-setup takes no arguments"), "{err}");
}

#[test]
fn non_root_is_refused_with_a_clear_message() {
    // setpriv is in util-linux, on every Debian host.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&e2e::binaries().agent)
        .arg("host-setup")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ecs-agent host-setup: must run as root (effective uid is 65534)"),
        "{err}"
    );
}

//! The web console's routes (docs/ecs-local.md §1.9), from loopback: the
//! page and its assets with their policy, the state, the operator actions
//! and their refusals, and signing in under `--require-auth`. The page
//! itself, and callers beyond loopback, are driven in headless Chromium
//! by `e2e/console.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use aws_sdk_ecs::types::ContainerDefinition;
use common::*;
use ecs_local::auth::Keys;
use ecs_local::console::{hmac_sha256, LOGIN_PREFIX};
use serde_json::{json, Value};

const FILE: &str = "[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = secret\n";

struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// One HTTP/1.1 request with extra header lines.
async fn request(h: &Harness, method: &str, path: &str, headers: &[&str], body: &[u8]) -> Answer {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    // The plane's own address, unless the test names another host.
    if !headers
        .iter()
        .any(|l| l.to_ascii_lowercase().starts_with("host:"))
    {
        head.push_str(&format!("Host: {}\r\n", h.addr()));
    }
    for line in headers {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    let (status, head, body) = exchange(&h.addr(), &bytes).await;
    Answer { status, head, body }
}

const FROM_PAGE: &str = "X-Ecs-Local-Console: 1";

async fn action(h: &Harness, path: &str, headers: &[&str], body: &Value) -> Answer {
    request(h, "POST", path, headers, body.to_string().as_bytes()).await
}

/// The task definition `web`, and the service `svc` of it with no task.
async fn register_with_idle_service(ecs: &aws_sdk_ecs::Client) {
    register(ecs).await;
    ecs.create_service()
        .cluster("default")
        .service_name("svc")
        .task_definition("web")
        .desired_count(0)
        .send()
        .await
        .unwrap();
}

async fn register(ecs: &aws_sdk_ecs::Client) {
    ecs.register_task_definition()
        .family("web")
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image("busybox")
                .memory(64)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn the_page_and_its_assets_come_from_the_plane_alone() {
    let h = Harness::start().await;
    for (path, kind) in [
        ("/console", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let answer = request(&h, "GET", path, &[], b"").await;
        assert_eq!(answer.status, 200, "{path}");
        assert!(
            answer.header("content-type").unwrap().starts_with(kind),
            "{path}: {}",
            answer.head
        );
        let policy = answer.header("content-security-policy").unwrap();
        assert!(policy.contains("default-src 'none'"), "{policy}");
        assert!(!policy.contains("http"), "{policy}");
        let text = String::from_utf8(answer.body).unwrap();
        // Nothing is fetched from another host: no absolute URL at all.
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{path}"
        );
        assert!(
            !text.contains("//cdn") && !text.contains("@import"),
            "{path}"
        );
    }
    let page = request(&h, "GET", "/console", &[], b"").await;
    let page = String::from_utf8(page.body).unwrap();
    assert!(page.contains("name=\"viewport\""), "not sized for phones");
}

#[tokio::test]
async fn without_auth_a_loopback_caller_reads_stops_tasks_and_scales_services() {
    let h = Harness::start().await;
    let ecs = h.client();
    let (_instance, _agent) = connected_instance(&h, "default", 4096, 4096).await;
    register_with_idle_service(&ecs).await;
    let run = ecs
        .run_task()
        .cluster("default")
        .task_definition("web")
        .send()
        .await
        .unwrap();
    let task_arn = run.tasks()[0].task_arn().unwrap().to_owned();

    let session = request(&h, "GET", "/console/api/session", &[], b"")
        .await
        .json();
    assert_eq!(session["canRead"], true);
    assert_eq!(session["canAct"], true);
    assert_eq!(session["requireAuth"], false);
    assert!(session["nonce"].is_null());

    let state = request(&h, "GET", "/console/api/state", &[], b"")
        .await
        .json();
    assert_eq!(state["cluster"], "default");
    assert_eq!(state["tasks"][0]["taskArn"], task_arn.as_str());
    assert_eq!(state["containerInstances"].as_array().unwrap().len(), 1);
    assert_eq!(state["services"][0]["serviceName"], "svc");
    assert!(state["clusters"][0]["runningTasksCount"].is_number());

    // Without the page's header: refused, nothing changes.
    let stop = json!({"cluster": "default", "task": task_arn});
    let refused = action(&h, "/console/api/stop-task", &[], &stop).await;
    assert_eq!(refused.status, 403);
    let id = task_arn.rsplit('/').next().unwrap().to_owned();
    h.plane
        .store()
        .read(|st| assert_eq!(st.tasks[&id].desired_status(), "RUNNING"));
    // Malformed bodies are refused as such.
    for bad in [&b"{"[..], b"[]", b"{\"cluster\":1}"] {
        let answer = request(&h, "POST", "/console/api/stop-task", &[FROM_PAGE], bad).await;
        assert_eq!(answer.status, 400, "{bad:?}");
    }
    let stopped = action(&h, "/console/api/stop-task", &[FROM_PAGE], &stop).await;
    assert_eq!(stopped.status, 200, "{:?}", stopped.json());
    assert_eq!(stopped.json()["task"]["desiredStatus"], "STOPPED");
    h.plane.store().read(|st| {
        let task = &st.tasks[&id];
        assert_eq!(task.desired_status(), "STOPPED");
        let reason = task.task.stopped_reason.clone().unwrap_or_default();
        assert!(reason.contains("console"), "{reason}");
    });

    let scale = json!({"cluster": "default", "service": "svc", "desiredCount": 2});
    let scaled = action(&h, "/console/api/desired-count", &[FROM_PAGE], &scale).await;
    assert_eq!(scaled.status, 200, "{:?}", scaled.json());
    assert_eq!(scaled.json()["service"]["desiredCount"], 2);
    // The API's own refusals come back with its exception.
    let too_many = json!({"cluster": "default", "service": "svc", "desiredCount": -1});
    let refused = action(&h, "/console/api/desired-count", &[FROM_PAGE], &too_many).await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["code"], "InvalidParameterException");
    let missing = json!({"cluster": "default", "service": "nope", "desiredCount": 1});
    let refused = action(&h, "/console/api/desired-count", &[FROM_PAGE], &missing).await;
    assert_eq!(refused.json()["code"], "ServiceNotFoundException");
}

fn signature(secret: &str, nonce: &str) -> String {
    let mut message = LOGIN_PREFIX.as_bytes().to_vec();
    message.extend_from_slice(nonce.as_bytes());
    hex::encode(hmac_sha256(secret.as_bytes(), &message))
}

async fn nonce(h: &Harness) -> String {
    let session = request(h, "GET", "/console/api/session", &[], b"")
        .await
        .json();
    session["nonce"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn under_require_auth_loopback_reads_and_only_a_signed_in_operator_acts() {
    let h =
        Harness::start_with(|c| c.require_auth = Some(Keys::from_credentials_file(FILE).unwrap()))
            .await;
    let ecs = h.client();
    register_with_idle_service(&ecs).await;

    let session = request(&h, "GET", "/console/api/session", &[], b"")
        .await
        .json();
    assert_eq!(session["requireAuth"], true);
    assert_eq!(
        session["canRead"], true,
        "loopback reads without signing in"
    );
    assert_eq!(session["canAct"], false);
    let state = request(&h, "GET", "/console/api/state", &[], b"").await;
    assert_eq!(state.status, 200);
    let scale = json!({"cluster": "default", "service": "svc", "desiredCount": 3});
    let refused = action(&h, "/console/api/desired-count", &[FROM_PAGE], &scale).await;
    assert_eq!(refused.status, 403);

    // A wrong secret, an unknown key, a made-up or spent nonce: refused.
    let login = |id: &str, nonce: &str, signature: String| json!({"accessKeyId": id, "nonce": nonce, "signature": signature});
    let n = nonce(&h).await;
    let wrong = login("AKIDEXAMPLE", &n, signature("not-it", &n));
    let answer = action(&h, "/console/api/login", &[FROM_PAGE], &wrong).await;
    assert_eq!(answer.status, 403);
    assert!(answer.header("set-cookie").is_none());
    let spent = login("AKIDEXAMPLE", &n, signature("secret", &n));
    assert_eq!(
        action(&h, "/console/api/login", &[FROM_PAGE], &spent)
            .await
            .status,
        403
    );
    let n = nonce(&h).await;
    let stranger = login("AKIDSTRANGER", &n, signature("secret", &n));
    assert_eq!(
        action(&h, "/console/api/login", &[FROM_PAGE], &stranger)
            .await
            .status,
        403
    );
    let invented = login("AKIDEXAMPLE", "0000", signature("secret", "0000"));
    assert_eq!(
        action(&h, "/console/api/login", &[FROM_PAGE], &invented)
            .await
            .status,
        403
    );
    let n = nonce(&h).await;
    let right = login("AKIDEXAMPLE", &n, signature("secret", &n));
    assert_eq!(
        action(&h, "/console/api/login", &[], &right).await.status,
        403,
        "no page header"
    );

    let n = nonce(&h).await;
    let right = login("AKIDEXAMPLE", &n, signature("secret", &n));
    let answer = action(&h, "/console/api/login", &[FROM_PAGE], &right).await;
    assert_eq!(answer.status, 200);
    // No cookie: a browser would send it to every port of this host.
    assert!(answer.header("set-cookie").is_none());
    let token = answer.json()["token"].as_str().unwrap().to_owned();
    let with_token = format!("X-Ecs-Local-Console: {token}");
    // The token in a cookie counts for nothing.
    let as_cookie = format!("Cookie: ecs_local_console={token}");
    let session = request(&h, "GET", "/console/api/session", &[&as_cookie], b"")
        .await
        .json();
    assert_eq!(session["canAct"], false);

    let session = request(&h, "GET", "/console/api/session", &[&with_token], b"")
        .await
        .json();
    assert_eq!(session["canAct"], true);
    assert_eq!(session["operator"], "AKIDEXAMPLE");
    let answer = action(&h, "/console/api/desired-count", &[&with_token], &scale).await;
    assert_eq!(answer.status, 200, "{:?}", answer.json());
    let desired = ecs
        .describe_services()
        .cluster("default")
        .services("svc")
        .send()
        .await
        .unwrap()
        .services()[0]
        .desired_count();
    assert_eq!(desired, 3);
    // Addressed by a name the plane was not given (DNS rebinding): refused.
    let rebound = action(
        &h,
        "/console/api/desired-count",
        &[&with_token, "Host: evil.example"],
        &scale,
    )
    .await;
    assert_eq!(rebound.status, 403);
    let rebound = request(
        &h,
        "GET",
        "/console/api/state",
        &["Host: evil.example:80"],
        b"",
    )
    .await;
    assert_eq!(rebound.status, 403);
    let page = request(&h, "GET", "/console", &["Host: evil.example"], b"").await;
    assert_eq!(page.status, 403);

    let out = action(&h, "/console/api/logout", &[&with_token], &json!({})).await;
    assert_eq!(out.status, 200);
    let session = request(&h, "GET", "/console/api/session", &[&with_token], b"")
        .await
        .json();
    assert_eq!(session["canAct"], false, "the session outlived sign-out");
    let after = action(&h, "/console/api/desired-count", &[&with_token], &scale).await;
    assert_eq!(after.status, 403);
}

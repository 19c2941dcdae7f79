#![allow(clippy::unwrap_used)]
use super::*;
use crate::credentials::{CredentialsStore, RoleCredentials, RoleType};
use crate::endpoints::audit::AuditLog;
use crate::endpoints::fixtures::{self, DOCKER_ID, ENDPOINT_ID, TASK_ARN};
use crate::endpoints::tmds::throttle::Throttle;
use crate::metrics::{fixture_kernel, Collector};
use std::sync::Arc;

fn deps(tasks: Vec<Task>) -> TaskEndpointDeps {
    TaskEndpointDeps {
        view: fixtures::view(tasks),
        credentials: Arc::new(CredentialsStore::new()),
        docker: None,
        ecs: None,
        stats: Collector::new(fixture_kernel("v1"), crate::metrics::STREAM_INTERVAL),
        audit: Arc::new(AuditLog::disabled()),
        throttle: Arc::new(Throttle::new(40, 60)),
        az_disabled: false,
    }
}

async fn ask(deps: &TaskEndpointDeps, target: &str) -> Reply {
    handle(Request::get(target), deps.clone()).await
}

fn creds() -> RoleCredentials {
    RoleCredentials {
        role_arn: "arn:aws:iam::111122223333:role/web-task-role".into(),
        access_key_id: "ASIAEXAMPLEKEY000001".into(),
        secret_access_key: "wJalrEXAMPLEsecretKEYvalue0000000000000".into(),
        session_token: "IQoJb3JpZ2luX2VjEXAMPLEtoken".into(),
        expiration: "2024-03-01T16:00:00Z".into(),
    }
}

#[test]
fn routes_parse_as_the_route_table_says() {
    use Version::{V3, V4};
    let cases = [
        ("/v1/credentials", Route::CredentialsV1),
        ("/v2/credentials/a/b", Route::CredentialsV2("a/b")),
        ("/v2/credentials/", Route::CredentialsV2("")),
        ("/v2/credentials", Route::NotFound),
        ("/v2/metadata", Route::V2),
        ("/v2/metadataWithTags/", Route::V2),
        ("/v2/stats/abc", Route::V2),
        ("/v3/id", Route::Container(V3, "id")),
        ("/v4/", Route::Container(V4, "")),
        (
            "/v4/id/task",
            Route::Task {
                version: V4,
                id: "id",
                with_tags: false,
            },
        ),
        (
            "/v3/id/taskWithTags",
            Route::Task {
                version: V3,
                id: "id",
                with_tags: true,
            },
        ),
        ("/v4/id/stats", Route::ContainerStats(V4, "id")),
        ("/v4/id/task/stats", Route::TaskStats(V4, "id")),
        ("/v4/id/task/", Route::NotFound),
        ("/v4/id/tasks", Route::NotFound),
        (
            "/v3/id/associations/gpu",
            Route::Associations(V3, "id", "gpu"),
        ),
        (
            "/v3/id/associations/gpu/",
            Route::Association(V3, "id", "gpu", ""),
        ),
        (
            "/v4/id/associations/gpu/a/b",
            Route::Association(V4, "id", "gpu", "a/b"),
        ),
        ("/v5/id", Route::NotFound),
    ];
    for (path, route) in cases {
        assert_eq!(parse_route(path), route, "{path}");
    }
}

#[tokio::test]
async fn credentials_answer_with_the_documented_bodies_and_codes() {
    let d = deps(Vec::new());
    d.credentials.expect(
        "pending-id",
        "arn:aws:ecs:us-west-2:1:task/default/other",
        RoleType::TaskApplication,
    );
    d.credentials
        .set("ready-id", TASK_ARN, RoleType::TaskApplication, creds());
    let ok = ask(&d, "/v2/credentials/ready-id").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header_value("Content-Type"), Some("application/json"));
    assert_eq!(
        ok.body_text(),
        r#"{"RoleArn":"arn:aws:iam::111122223333:role/web-task-role","AccessKeyId":"ASIAEXAMPLEKEY000001","SecretAccessKey":"wJalrEXAMPLEsecretKEYvalue0000000000000","Token":"IQoJb3JpZ2luX2VjEXAMPLEtoken","Expiration":"2024-03-01T16:00:00Z"}"#
    );
    assert_eq!(ask(&d, "/v1/credentials?id=ready-id").await.body, ok.body);

    let cases = [
        (
            "/v1/credentials",
            400,
            r#"{"code":"NoIdInRequest","message":"CredentialsV1Request: No Credential ID in the request","HTTPErrorCode":400}"#,
        ),
        (
            "/v1/credentials?id=",
            400,
            r#"{"code":"NoIdInRequest","message":"CredentialsV1Request: No Credential ID in the request","HTTPErrorCode":400}"#,
        ),
        (
            "/v2/credentials/",
            400,
            r#"{"code":"NoIdInRequest","message":"CredentialsV2Request: No Credential ID in the request","HTTPErrorCode":400}"#,
        ),
        (
            "/v2/credentials/nope",
            400,
            r#"{"code":"InvalidIdInRequest","message":"CredentialsV2Request: Credentials not found","HTTPErrorCode":400}"#,
        ),
        (
            "/v1/credentials?id=nope",
            400,
            r#"{"code":"InvalidIdInRequest","message":"CredentialsV1Request: Credentials not found","HTTPErrorCode":400}"#,
        ),
        (
            "/v2/credentials/pending-id",
            503,
            r#"{"code":"CredentialsUninitialized","message":"CredentialsV2Request: Credentials uninitialized for ID","HTTPErrorCode":503}"#,
        ),
    ];
    for (path, status, body) in cases {
        let reply = ask(&d, path).await;
        assert_eq!(
            (reply.status, reply.body_text().as_str()),
            (status, body),
            "{path}"
        );
    }
    let missing = ask(&d, "/v2/credentials").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body_text(), "404 page not found\n");
    assert_eq!(
        missing.header_value("X-Content-Type-Options"),
        Some("nosniff")
    );
}

#[tokio::test]
async fn every_response_carries_the_rate_limit_headers_and_the_61st_is_refused() {
    let mut d = deps(Vec::new());
    // With refills, the 61st would pass whenever the 61 requests took more
    // than 25 ms; refilling is the throttle's own unit test.
    d.throttle = Arc::new(Throttle::without_refill(40, 60));
    let first = ask(&d, "/v2/credentials/x").await;
    assert_eq!(first.header_value("X-Rate-Limit-Limit"), Some("40.00"));
    assert_eq!(first.header_value("X-Rate-Limit-Duration"), Some("1"));
    assert_eq!(
        first.header_value("X-Rate-Limit-Request-Forwarded-For"),
        Some("")
    );
    assert_eq!(
        first.header_value("X-Rate-Limit-Request-Remote-Addr"),
        Some("127.0.0.1:40000")
    );
    let mut last = first;
    for _ in 0..60 {
        last = ask(&d, "/v2/credentials/x").await;
    }
    assert_eq!(last.status, 429);
    assert_eq!(last.body_text(), "You have reached maximum request limit.");
    assert_eq!(
        last.header_value("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(last.header_value("X-Rate-Limit-Limit"), Some("40.00"));
    // Another path has its own bucket.
    assert_eq!(ask(&d, "/v2/credentials/y").await.status, 400);
}

#[tokio::test]
async fn unclean_paths_redirect_with_their_query() {
    let d = deps(Vec::new());
    let reply = ask(&d, "/v1//credentials?id=a").await;
    assert_eq!(reply.status, 301);
    assert_eq!(reply.header_value("Location"), Some("/v1/credentials?id=a"));
}

#[tokio::test]
async fn v2_needs_an_awsvpc_caller() {
    let d = deps(vec![fixtures::running_task()]);
    for path in [
        "/v2/metadata",
        "/v2/stats",
        &format!("/v2/metadata/{DOCKER_ID}"),
    ] {
        let reply = ask(&d, path).await;
        assert_eq!(reply.status, 400, "{path}");
        assert_eq!(
            reply.body_text(),
            r#""Unable to get task arn from request: unable to associate '127.0.0.1' with task""#
        );
    }
}

#[tokio::test]
async fn unknown_endpoint_ids_fail_as_documented() {
    let d = deps(vec![fixtures::running_task()]);
    let cases = [
        ("/v3/bad", 500, "V3 container metadata handler: unable to get container ID from request: unable to get docker ID from v3 endpoint ID: bad"),
        ("/v3/bad/task", 500, "V3 task metadata handler: unable to get task arn from request: unable to get task Arn from v3 endpoint ID: bad"),
        ("/v4/bad", 404, "V4 container metadata handler: unable to get container ID from request: unable to get docker ID from v3 endpoint ID: bad"),
        ("/v4/", 404, "V4 container metadata handler: unable to get container ID from request: unable to get docker ID from v3 endpoint ID: "),
        ("/v4/bad/task", 404, "V4 task metadata handler: unable to get task arn from request: unable to get task Arn from v3 endpoint ID: bad"),
        ("/v4/bad/task/stats", 404, "V4 task stats handler: unable to get task arn from request: unable to get task Arn from v3 endpoint ID: bad"),
        ("/v3/bad/stats", 400, "V3 container stats handler: unable to get task arn from request: unable to get task Arn from v3 endpoint ID: bad"),
    ];
    for (path, status, message) in cases {
        let reply = ask(&d, path).await;
        assert_eq!(reply.status, status, "{path}");
        assert_eq!(reply.body_text(), format!("\"{message}\""), "{path}");
        assert_eq!(reply.header_value("Content-Type"), Some("application/json"));
    }
}

#[tokio::test]
async fn an_endpoint_id_works_only_once_its_container_exists() {
    let mut task = fixtures::running_task();
    task.containers[0].docker_id = None;
    let d = deps(vec![task]);
    assert_eq!(ask(&d, &format!("/v4/{ENDPOINT_ID}")).await.status, 404);
    let d = deps(vec![fixtures::running_task()]);
    let reply = ask(&d, &format!("/v4/{ENDPOINT_ID}")).await;
    assert_eq!(reply.status, 200);
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["DockerId"], DOCKER_ID);
    let task = ask(&d, &format!("/v3/{ENDPOINT_ID}/task")).await;
    let body: serde_json::Value = serde_json::from_slice(&task.body).unwrap();
    assert_eq!(body["TaskARN"], TASK_ARN);
    assert_eq!(body["AvailabilityZone"], "us-west-2a");
}

#[tokio::test(start_paused = true)]
async fn stats_are_null_or_empty_until_the_container_runs_then_read_from_the_kernel() {
    // No process known yet (not started, or before the first inspect).
    let mut d = deps(vec![fixtures::running_task()]);
    let v3 = ask(&d, &format!("/v3/{ENDPOINT_ID}/stats")).await;
    assert_eq!((v3.status, v3.body_text().as_str()), (200, "null"));
    let v4 = ask(&d, &format!("/v4/{ENDPOINT_ID}/stats")).await;
    assert_eq!(v4.body_text(), "{}");
    let task_v3 = ask(&d, &format!("/v3/{ENDPOINT_ID}/task/stats")).await;
    assert_eq!(task_v3.body_text(), format!(r#"{{"{DOCKER_ID}":null}}"#));
    let task_v4 = ask(&d, &format!("/v4/{ENDPOINT_ID}/task/stats")).await;
    assert_eq!(task_v4.body_text(), format!(r#"{{"{DOCKER_ID}":{{}}}}"#));

    // Running, PID known: read from the (fixture) kernel, in Docker's shape.
    let mut task = fixtures::running_task();
    task.containers[0].pid = Some(4242);
    d.view = fixtures::view(vec![task]);
    let v3: serde_json::Value =
        serde_json::from_slice(&ask(&d, &format!("/v3/{ENDPOINT_ID}/stats")).await.body).unwrap();
    assert_eq!(v3["id"], DOCKER_ID);
    assert_eq!(v3["memory_stats"]["usage"], 6_242_304);
    assert_eq!(v3["networks"]["eth0"]["rx_bytes"], 806);
    assert!(v3.get("network_rate_stats").is_none());
    // A later request has an earlier reading: precpu and the rates.
    tokio::time::advance(std::time::Duration::from_secs(5)).await;
    let v4: serde_json::Value =
        serde_json::from_slice(&ask(&d, &format!("/v4/{ENDPOINT_ID}/stats")).await.body).unwrap();
    assert_eq!(v4["precpu_stats"]["cpu_usage"]["total_usage"], 33_985_648);
    assert_eq!(v4["network_rate_stats"]["rx_bytes_per_sec"], 0.0);
    assert_eq!(v4["network_rate_stats"]["tx_bytes_per_sec"], 0.0);
    let all: serde_json::Value =
        serde_json::from_slice(&ask(&d, &format!("/v4/{ENDPOINT_ID}/task/stats")).await.body)
            .unwrap();
    assert_eq!(all[DOCKER_ID]["id"], DOCKER_ID);
}

#[tokio::test]
async fn associations_are_empty_on_this_agent() {
    let d = deps(vec![fixtures::running_task()]);
    let list = ask(&d, &format!("/v4/{ENDPOINT_ID}/associations/gpu")).await;
    assert_eq!(
        (list.status, list.body_text().as_str()),
        (200, r#"{"Associations":[]}"#)
    );
    let one = ask(&d, &format!("/v3/{ENDPOINT_ID}/associations/gpu/")).await;
    assert_eq!(one.status, 400);
}

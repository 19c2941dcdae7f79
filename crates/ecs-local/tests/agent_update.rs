//! `UpdateContainerAgent` through the AWS SDK, with a scripted agent on
//! the ACS socket: the stage, the download from the plane, the perform,
//! and `agentUpdateStatus` from PENDING to UPDATED or FAILED.
#![allow(clippy::unwrap_used)]

mod common;

use aws_sdk_ecs::operation::update_container_agent::UpdateContainerAgentError;
use common::{connected_instance, eventually, next_of_type, send_json, Harness, Ws, PATIENCE};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn bundle_bytes() -> Vec<u8> {
    b"an agent image, as docker save writes it".repeat(3000)
}

/// A plane offering [`bundle_bytes`] as its agent update, and the
/// directory of the bundle (read again each time it is served).
async fn plane_with_bundle() -> (Harness, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.tar");
    std::fs::write(&path, bundle_bytes()).unwrap();
    let h = Harness::start_with(|c| c.agent_update_bundle = Some(path)).await;
    (h, dir)
}

fn id_of(arn: &str) -> String {
    arn.rsplit('/').next().unwrap().to_owned()
}

async fn status(h: &Harness, arn: &str) -> Option<String> {
    let out = h
        .client()
        .describe_container_instances()
        .container_instances(arn)
        .send()
        .await
        .unwrap();
    out.container_instances()[0]
        .agent_update_status()
        .map(|s| s.as_str().to_owned())
}

async fn update(h: &Harness, arn: &str) -> Result<String, UpdateContainerAgentError> {
    h.client()
        .update_container_agent()
        .container_instance(arn)
        .send()
        .await
        .map(|out| {
            out.container_instance()
                .unwrap()
                .agent_update_status()
                .unwrap()
                .as_str()
                .to_owned()
        })
        .map_err(|e| e.into_service_error())
}

/// What the agent answers with.
async fn reply(ws: &mut Ws, frame_type: &str, message: &Value, reason: Option<&str>) {
    let m = &message["message"];
    let mut body = json!({"cluster": m["clusterArn"], "containerInstance": m["containerInstanceArn"],
                          "messageId": m["messageId"]});
    if let Some(reason) = reason {
        body["reason"] = json!(reason);
    }
    send_json(ws, &json!({"type": frame_type, "message": body})).await;
}

/// A plain GET of an absolute `http://` URL; status and body bytes.
async fn download(url: &str) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let (status, _, body) = common::split_response(&response);
    (status, body)
}

#[tokio::test]
async fn an_update_is_staged_downloaded_performed_and_completed_on_reconnect() {
    let (h, _bundle) = plane_with_bundle().await;
    let (arn, mut ws) = connected_instance(&h, "default", 1024, 2048).await;
    assert_eq!(status(&h, &arn).await, None);

    assert_eq!(update(&h, &arn).await.unwrap(), "PENDING");
    let stage = next_of_type(&mut ws, "StageUpdateMessage", PATIENCE).await;
    let m = &stage["message"];
    assert_eq!(m["containerInstanceArn"], arn.as_str());
    assert_eq!(
        m["clusterArn"],
        "arn:aws:ecs:us-east-1:000000000000:cluster/default"
    );
    let signature = m["updateInfo"]["signature"].as_str().unwrap();
    assert_eq!(signature, hex::encode(Sha256::digest(bundle_bytes())));
    let location = m["updateInfo"]["location"].as_str().unwrap();
    assert_eq!(
        location,
        format!("http://{}/agent-updates/{signature}.tar", h.addr())
    );
    assert_eq!(status(&h, &arn).await.as_deref(), Some("STAGING"));
    assert!(matches!(
        update(&h, &arn).await,
        Err(UpdateContainerAgentError::UpdateInProgressException(_))
    ));

    let (code, body) = download(location).await;
    assert_eq!(code, 200);
    assert_eq!(body, bundle_bytes());
    let (code, _) = download(&format!(
        "http://{}/agent-updates/{}.tar",
        h.addr(),
        "0".repeat(64)
    ))
    .await;
    assert_eq!(code, 404);

    reply(&mut ws, "AckRequest", &stage, None).await;
    let perform = next_of_type(&mut ws, "PerformUpdateMessage", PATIENCE).await;
    assert_eq!(perform["message"]["containerInstanceArn"], arn.as_str());
    assert_ne!(
        perform["message"]["messageId"],
        stage["message"]["messageId"]
    );
    assert_eq!(status(&h, &arn).await.as_deref(), Some("UPDATING"));

    // The agent acks and exits; the new agent connects.
    reply(&mut ws, "AckRequest", &perform, None).await;
    let id = id_of(&arn);
    eventually(&h.plane, "the perform ack", |st| {
        st.instances[&id]
            .agent_update
            .as_ref()
            .is_some_and(|u| u.perform_acked)
    })
    .await;
    drop(ws);
    eventually(&h.plane, "the agent gone", |st| {
        !st.instances[&id].agent_connected
    })
    .await;
    let _ws = common::connect_agent(&h, "default", &arn, true).await;
    eventually(&h.plane, "UPDATED", |st| {
        st.instances[&id].agent_update.as_ref().map(|u| u.status)
            == Some(ecs_local::agent_update::UpdateStatus::Updated)
    })
    .await;
    assert_eq!(status(&h, &arn).await.as_deref(), Some("UPDATED"));
    // Now it runs the offered bundle: nothing left to update to.
    assert!(matches!(
        update(&h, &arn).await,
        Err(UpdateContainerAgentError::NoUpdateAvailableException(_))
    ));
}

#[tokio::test]
async fn a_nack_fails_the_update_and_a_new_one_may_start() {
    let (h, _bundle) = plane_with_bundle().await;
    let (arn, mut ws) = connected_instance(&h, "default", 1024, 2048).await;
    update(&h, &arn).await.unwrap();
    let stage = next_of_type(&mut ws, "StageUpdateMessage", PATIENCE).await;
    reply(&mut ws, "NackRequest", &stage, Some("Updates are disabled")).await;
    let id = id_of(&arn);
    eventually(&h.plane, "FAILED", |st| {
        st.instances[&id].agent_update.as_ref().map(|u| u.status)
            == Some(ecs_local::agent_update::UpdateStatus::Failed)
    })
    .await;
    assert_eq!(status(&h, &arn).await.as_deref(), Some("FAILED"));

    // Tried again, a nack of the perform fails it too.
    assert_eq!(update(&h, &arn).await.unwrap(), "PENDING");
    let stage = next_of_type(&mut ws, "StageUpdateMessage", PATIENCE).await;
    reply(&mut ws, "AckRequest", &stage, None).await;
    let perform = next_of_type(&mut ws, "PerformUpdateMessage", PATIENCE).await;
    reply(
        &mut ws,
        "NackRequest",
        &perform,
        Some("Cannot perform update; update not downloaded"),
    )
    .await;
    eventually(&h.plane, "FAILED again", |st| {
        st.instances[&id].agent_update.as_ref().map(|u| u.status)
            == Some(ecs_local::agent_update::UpdateStatus::Failed)
    })
    .await;
}

#[tokio::test]
async fn a_pending_update_waits_for_the_agent_and_survives_a_plane_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.tar");
    std::fs::write(&path, bundle_bytes()).unwrap();
    let data = dir.path().join("data");
    let plane =
        common::start_in_with(data.clone(), |c| c.agent_update_bundle = Some(path.clone())).await;
    let h = Harness {
        plane,
        dir: tempfile::tempdir().unwrap(),
    };
    let arn = common::register_instance(&h, "default", &[]).await;
    // No agent connected: the update waits in PENDING.
    assert_eq!(update(&h, &arn).await.unwrap(), "PENDING");
    assert_eq!(status(&h, &arn).await.as_deref(), Some("PENDING"));
    h.plane.shutdown().await.unwrap();

    let plane = common::start_in_with(data, |c| c.agent_update_bundle = Some(path.clone())).await;
    let h = Harness {
        plane,
        dir: tempfile::tempdir().unwrap(),
    };
    assert_eq!(status(&h, &arn).await.as_deref(), Some("PENDING"));
    let mut ws = common::connect_agent(&h, "default", &arn, true).await;
    let stage = next_of_type(&mut ws, "StageUpdateMessage", PATIENCE).await;
    assert_eq!(stage["message"]["containerInstanceArn"], arn.as_str());
    assert_eq!(status(&h, &arn).await.as_deref(), Some("STAGING"));
}

#[tokio::test]
async fn refusals_have_the_ecs_error_shapes() {
    // No bundle offered.
    let h = Harness::start().await;
    let (arn, _ws) = connected_instance(&h, "default", 1024, 2048).await;
    let err = update(&h, &arn).await.unwrap_err();
    assert!(
        matches!(
            err,
            UpdateContainerAgentError::NoUpdateAvailableException(_)
        ),
        "{err:?}"
    );
    assert_eq!(status(&h, &arn).await, None);

    let (h, _bundle) = plane_with_bundle().await;
    let unknown = "arn:aws:ecs:us-east-1:000000000000:container-instance/default/0123456789abcdef";
    assert!(matches!(
        update(&h, unknown).await.unwrap_err(),
        UpdateContainerAgentError::InvalidParameterException(_)
    ));
    let err = h
        .client()
        .update_container_agent()
        .cluster("nope")
        .container_instance(unknown)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, UpdateContainerAgentError::ClusterNotFoundException(_)),
        "{err:?}"
    );
    // The raw answer: HTTP 400 and the exception's name.
    let (code, body) = h
        .call(
            "UpdateContainerAgent",
            json!({"containerInstance": unknown}).to_string().as_bytes(),
        )
        .await;
    assert_eq!(code, 400);
    assert_eq!(body["__type"], "InvalidParameterException");

    let (arn, _ws) = connected_instance(&h, "default", 1024, 2048).await;
    update(&h, &arn).await.unwrap();
    let (code, body) = h
        .call(
            "UpdateContainerAgent",
            json!({"containerInstance": arn}).to_string().as_bytes(),
        )
        .await;
    assert_eq!(code, 400);
    assert_eq!(body["__type"], "UpdateInProgressException");
}

//! The calls only agents make: `DiscoverPollEndpoint`,
//! `SubmitTaskStateChange`, `SubmitContainerStateChange`,
//! `SubmitAttachmentStateChanges`.

use super::{ApiError, RequestInfo};
use crate::clock;
use crate::lifecycle::{self, ChangeOutcome};
use crate::Context;
use ecs_model::ecs_api::{
    DiscoverPollEndpointRequest, DiscoverPollEndpointResponse, SubmitAttachmentStateChangesRequest,
    SubmitContainerStateChangeRequest, SubmitStateChangeResponse, SubmitTaskStateChangeRequest,
};

/// Points agents at this same server: ACS under `/acs`, TCS under `/tcs/`.
/// Agents add `/` when missing and then `ws`, so both resolve to
/// `/acs/ws` and `/tcs/ws`; `http://` makes them use plain `ws://`, and
/// `https://` (under TLS) `wss://`.
pub(super) fn discover_poll_endpoint(
    ctx: &Context,
    _req: DiscoverPollEndpointRequest,
    info: &RequestInfo,
) -> Result<DiscoverPollEndpointResponse, ApiError> {
    Ok(DiscoverPollEndpointResponse {
        endpoint: Some(format!("{}://{}/acs", ctx.scheme, info.host)),
        telemetry_endpoint: Some(format!("{}://{}/tcs/", ctx.scheme, info.host)),
        service_connect_endpoint: None,
        system_logs_endpoint: None,
    })
}

fn ack() -> SubmitStateChangeResponse {
    SubmitStateChangeResponse {
        acknowledgment: Some("ACK".to_owned()),
    }
}

/// Unknown tasks are acknowledged and ignored: the Go agent drops an event
/// on an error, which would lose nothing here but log noise there.
pub(super) fn submit_task_state_change(
    ctx: &Context,
    req: SubmitTaskStateChangeRequest,
) -> Result<SubmitStateChangeResponse, ApiError> {
    let (outcome, of_service) = ctx.store.update(|st| {
        let outcome = lifecycle::apply_task_state_change(st, &req, clock::epoch_seconds());
        let id = crate::arn::resource_id(req.task.as_deref().unwrap_or_default());
        let of_service = st.tasks.get(id).is_some_and(|t| t.service.is_some());
        Ok::<_, ApiError>((outcome, of_service))
    })?;
    if of_service {
        // A service task started, became healthy or stopped: the scheduler
        // has something to answer.
        ctx.wake_services();
    }
    let task = req.task.as_deref().unwrap_or_default();
    match outcome {
        ChangeOutcome::Applied => {
            tracing::info!(
                task,
                status = req.status.as_deref().unwrap_or_default(),
                "task state change"
            );
        }
        ChangeOutcome::UnknownTask => {
            tracing::warn!(task, "state change for an unknown task ignored");
        }
    }
    Ok(ack())
}

pub(super) fn submit_container_state_change(
    ctx: &Context,
    req: SubmitContainerStateChangeRequest,
) -> Result<SubmitStateChangeResponse, ApiError> {
    let outcome = ctx
        .store
        .update(|st| Ok::<_, ApiError>(lifecycle::apply_container_state_change(st, &req)))?;
    if outcome == ChangeOutcome::UnknownTask {
        tracing::warn!(
            task = req.task.as_deref().unwrap_or_default(),
            "container state change for an unknown task ignored"
        );
    }
    Ok(ack())
}

/// The plane attaches no ENIs or volumes, so attachment changes are only
/// acknowledged (an error would make the agent retry them forever).
pub(super) fn submit_attachment_state_changes(
    req: SubmitAttachmentStateChangesRequest,
) -> SubmitStateChangeResponse {
    tracing::info!(
        attachments = req.attachments.map_or(0, |a| a.len()),
        "attachment state changes acknowledged and ignored"
    );
    ack()
}

//! Request targets on both local endpoints: every path and query gets an
//! answer (a redirect, a body or an error), never a panic.
#![no_main]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use ecs_agent::credentials::CredentialsStore;
use ecs_agent::endpoints::audit::AuditLog;
use ecs_agent::endpoints::server::Request;
use ecs_agent::endpoints::tmds::{self, throttle::Throttle};
use ecs_agent::endpoints::{introspection, paths, AgentView, TaskEndpointDeps, TaskSource};
use ecs_agent::metrics::{Collector, Kernel};
use ecs_agent::store::Health;
use libfuzzer_sys::fuzz_target;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
});

static DEPS: LazyLock<TaskEndpointDeps> = LazyLock::new(|| TaskEndpointDeps {
    view: AgentView {
        cluster: "default".into(),
        instance_arn: "arn:aws:ecs:us-east-1:1:container-instance/default/x".into(),
        availability_zone: None,
        tasks: TaskSource::Fixed(Arc::new(Vec::new())),
        checkpoint: Health::default(),
    },
    credentials: Arc::new(CredentialsStore::new()),
    docker: None,
    ecs: None,
    // A root with no /proc: every stats read fails cleanly.
    stats: Collector::new(
        Kernel::at(std::path::Path::new("/nonexistent")),
        std::time::Duration::from_secs(1),
    ),
    audit: Arc::new(AuditLog::disabled()),
    throttle: Arc::new(Throttle::new(1_000_000, 1_000_000)),
    az_disabled: false,
});

fuzz_target!(|data: &[u8]| {
    let target = String::from_utf8_lossy(data);
    let peer = SocketAddr::from(([172, 17, 0, 2], 40000));
    let request = Request::new("GET", &target, peer);
    let _ = paths::clean(&request.path);
    let _ = tmds::parse_route(&request.path);
    let _ = introspection::route(&request, &DEPS.view, &[], &HashMap::new());
    let reply = RUNTIME.block_on(tmds::handle(request, DEPS.clone()));
    assert!((200..600).contains(&reply.status));
});

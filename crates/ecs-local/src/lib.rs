//! ecs-local: a local Amazon ECS control plane. One HTTP port serves the ECS
//! JSON 1.1 API (`POST /`) for the AWS CLI, SDKs and agents, the ACS
//! (`/acs/ws`) and TCS (`/tcs/ws`) websockets agents connect to, and a few
//! local-only routes under `/_local/` (see [`local_api`]), such as the task
//! IAM role credentials the plane issued (see [`credentials`]), and, when
//! it was given one, the agent update bundle it offers to
//! `UpdateContainerAgent` (see [`agent_update`]).
//!
//! Start it in-process with [`Plane::start`] on a bound listener, and stop
//! it with [`Plane::shutdown`].
#![forbid(unsafe_code)]

pub mod acs_hub;
pub mod agent_update;
mod api;
pub mod arn;
pub mod attributes;
pub mod auth;
pub mod clock;
pub mod console;
pub mod credentials;
pub mod launch;
pub mod lifecycle;
pub mod local_api;
pub mod log_format;
pub mod metrics_page;
pub mod placement;
pub mod plane_metrics;
pub mod query;
pub mod render;
pub mod services;
pub mod store;
pub mod tcs_hub;
pub mod tls;

use acs_hub::AcsHub;
use agent_update::{Bundle, BundleError};
use arn::ArnBuilder;
use axum::extract::connect_info::Connected;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use axum::Router;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use store::{ClusterRecord, Store, StoreError};
use tcs_hub::{InstanceTelemetry, TcsHub};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Largest request body accepted (task definitions are at most 64 KiB in
/// ECS; agents' registrations are a few KiB).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Time between sweeps that forget tasks stopped longer than
/// [`store::STOPPED_TASK_RETENTION_SECS`] ago.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Default time between passes of the service scheduler.
pub const DEFAULT_SERVICE_INTERVAL: Duration = Duration::from_secs(1);

/// Default time between task manifests.
pub const DEFAULT_TASK_MANIFEST_INTERVAL: Duration = Duration::from_secs(60);

/// How the plane runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the state database (`state.redb`) lives.
    pub data_dir: PathBuf,
    /// Region in every ARN; the availability zone is this plus `a`.
    pub region: String,
    /// Time between ACS and TCS heartbeats (agents need one at least every
    /// 30 s).
    pub heartbeat_interval: Duration,
    /// Delay before the first heartbeat of a connection.
    pub first_heartbeat: Duration,
    /// Lifetime of the task IAM role credentials the plane issues; they are
    /// refreshed at half of it. The binary reads it from
    /// `ECS_LOCAL_CREDENTIALS_TTL` (seconds).
    pub credentials_ttl: Duration,
    /// Time between the `TaskManifestMessage`s each connected agent gets
    /// (docs/protocols.md §4.8); the first goes out this long after it connects.
    pub task_manifest_interval: Duration,
    /// The agent update bundle `UpdateContainerAgent` installs (a tar file,
    /// served by the plane itself); none means every such call answers
    /// `NoUpdateAvailableException`.
    pub agent_update_bundle: Option<PathBuf>,
    /// Passed to agents as `ecrAuthData.endpointOverride` of every task
    /// whose image is in an Amazon ECR registry, so that their ECR
    /// `GetAuthorizationToken` calls go there; none leaves it out (agents
    /// then use ECR's regional endpoint).
    pub ecr_endpoint_override: Option<String>,
    /// With key pairs, every ECS API request and ACS/TCS upgrade must carry
    /// a valid SigV4 signature by one of them (crate::auth).
    pub require_auth: Option<auth::Keys>,
    /// Time between passes of the service scheduler when nothing wakes it
    /// sooner (API calls and state changes that concern services do).
    pub service_interval: Duration,
    /// With a server configuration, the port speaks HTTPS and WSS only
    /// (crate::tls), and DiscoverPollEndpoint hands out `https://` URLs.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// DNS names the web console may be addressed by, besides IP addresses
    /// and `localhost` (crate::console::host_allowed).
    pub host_names: Vec<String>,
}

impl Config {
    /// Defaults: region `us-east-1`, heartbeats every 20 s, the first 1 s
    /// after connecting, credentials valid for one hour, a task manifest
    /// every 60 s, no agent update bundle, no ECR endpoint override.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            region: "us-east-1".to_owned(),
            heartbeat_interval: Duration::from_secs(20),
            first_heartbeat: Duration::from_secs(1),
            credentials_ttl: credentials::DEFAULT_TTL,
            task_manifest_interval: DEFAULT_TASK_MANIFEST_INTERVAL,
            agent_update_bundle: None,
            ecr_endpoint_override: None,
            require_auth: None,
            service_interval: DEFAULT_SERVICE_INTERVAL,
            tls: None,
            host_names: Vec::new(),
        }
    }
}

/// Errors starting or running the plane.
#[derive(Debug, thiserror::Error)]
pub enum PlaneError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("cannot read the listener address: {0}")]
    Address(std::io::Error),
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error("server task failed: {0}")]
    Join(tokio::task::JoinError),
}

/// What every request handler shares.
pub(crate) struct Context {
    pub(crate) store: Arc<Store>,
    pub(crate) arns: ArnBuilder,
    pub(crate) acs: AcsHub,
    pub(crate) tcs: TcsHub,
    pub(crate) local_addr: SocketAddr,
    /// `https` under TLS, else `http`.
    pub(crate) scheme: &'static str,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) credentials_ttl: Duration,
    /// The agent update offered, if any.
    pub(crate) agent_update: Option<Arc<Bundle>>,
    /// Wakes the service scheduler for a pass now.
    pub(crate) services_wake: Arc<tokio::sync::Notify>,
    /// API request counts and latencies, for `GET /metrics`.
    pub(crate) api_metrics: plane_metrics::ApiMetrics,
    /// The key pairs callers must sign with, under `--require-auth`.
    pub(crate) auth: Option<auth::Keys>,
    /// The web console's operators and sign-in nonces.
    pub(crate) console: console::Sessions,
    /// Names the console may be addressed by (Config::host_names).
    pub(crate) host_names: Vec<String>,
}

impl Context {
    /// Under `--require-auth`, whether the request is signed by one of the
    /// key pairs; always fine without it.
    pub(crate) fn authenticate(
        &self,
        method: &str,
        uri: &axum::http::Uri,
        headers: &axum::http::HeaderMap,
        body: &[u8],
    ) -> Result<(), auth::AuthError> {
        let Some(keys) = &self.auth else {
            return Ok(());
        };
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
        let received = auth::Received {
            method,
            path_and_query,
            headers: &headers,
            body,
        };
        auth::verify(keys, &received, Some(std::time::SystemTime::now())).inspect_err(|e| {
            tracing::warn!(method, path = uri.path(), code = e.code(), error = %e, "request refused: not authenticated");
        })
    }

    /// Runs `work` on the blocking pool, where the store may wait on the
    /// disk without holding up the async workers; `None` (logged) if it
    /// panicked.
    pub(crate) async fn blocking<R: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Context) -> R + Send + 'static,
    ) -> Option<R> {
        let ctx = self.clone();
        match tokio::task::spawn_blocking(move || work(&ctx)).await {
            Ok(result) => Some(result),
            Err(e) => {
                tracing::error!(error = %e, "store work on the blocking pool failed");
                None
            }
        }
    }

    /// Asks the service scheduler for a pass (after a change a service may
    /// have to answer: a service call, a task stopping, an instance
    /// draining).
    pub(crate) fn wake_services(&self) {
        self.services_wake.notify_one();
    }
}

/// A running plane.
pub struct Plane {
    ctx: Arc<Context>,
    shutdown: watch::Sender<bool>,
    server: Option<JoinHandle<Result<(), PlaneError>>>,
    /// The background loops (credentials refresh, service scheduler,
    /// pruner); they end at shutdown.
    loops: Vec<JoinHandle<()>>,
}

impl Plane {
    /// Loads the state from `config.data_dir` and serves on `listener`.
    pub async fn start(listener: TcpListener, config: Config) -> Result<Self, PlaneError> {
        let local_addr = listener.local_addr().map_err(PlaneError::Address)?;
        let arns = ArnBuilder::new(&config.region);
        let default_arn = arns.cluster("default");
        let store = Arc::new(Store::open(&config.data_dir, || ClusterRecord {
            name: "default".to_owned(),
            arn: default_arn,
            status: "ACTIVE".to_owned(),
            tags: None,
            settings: None,
            configuration: None,
        })?);
        let agent_update = match &config.agent_update_bundle {
            Some(path) => {
                let bundle = Bundle::load(path)?;
                tracing::info!(
                    path = %path.display(),
                    sha256 = bundle.sha256(),
                    bytes = bundle.size(),
                    "offering an agent update"
                );
                Some(Arc::new(bundle))
            }
            None => None,
        };
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let ctx = Arc::new(Context {
            acs: AcsHub::new(
                store.clone(),
                config.heartbeat_interval,
                config.first_heartbeat,
                config.credentials_ttl,
                config.task_manifest_interval,
            )
            .with_agent_update(agent_update.clone())
            .with_render_settings(render::Settings {
                region: config.region.clone(),
                ecr_endpoint_override: config.ecr_endpoint_override.clone(),
            }),
            tcs: TcsHub::new(
                store.clone(),
                config.heartbeat_interval,
                config.first_heartbeat,
            ),
            store,
            arns,
            local_addr,
            scheme: if config.tls.is_some() {
                "https"
            } else {
                "http"
            },
            shutdown: shutdown_rx.clone(),
            credentials_ttl: config.credentials_ttl,
            agent_update,
            services_wake: Arc::new(tokio::sync::Notify::new()),
            api_metrics: plane_metrics::ApiMetrics::default(),
            auth: config.require_auth.clone(),
            console: console::Sessions::default(),
            host_names: config.host_names.clone(),
        });
        let app = Router::new()
            .route("/", post(api::handle))
            .route("/acs/ws", get(acs_hub::upgrade))
            .route("/tcs/ws", get(tcs_hub::upgrade))
            .route("/metrics", get(metrics_page_handler))
            .route("/healthz", get(healthz))
            .route("/console", get(console::page))
            .route("/console/app.js", get(console::script))
            .route("/console/app.css", get(console::style))
            .route("/console/api/session", get(console::session))
            .route("/console/api/state", get(console::state))
            .route("/console/api/login", post(console::login))
            .route("/console/api/logout", post(console::logout))
            .route("/console/api/stop-task", post(console::stop_task))
            .route("/console/api/desired-count", post(console::desired_count))
            .route(agent_update::ROUTE, get(agent_update::serve))
            .route(
                local_api::TASK_CREDENTIALS_PATH,
                get(local_api::task_credentials),
            )
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(ctx.clone());
        let loops = vec![
            spawn_credentials_refresher(
                ctx.clone(),
                credentials::refresh_tick(config.credentials_ttl),
            ),
            spawn_service_scheduler(ctx.clone(), config.service_interval),
            spawn_pruner(ctx.clone(), PRUNE_INTERVAL),
        ];
        let incoming = match &config.tls {
            Some(tls) => Incoming::Tls(
                tls::TlsListener::new(listener, tls.clone()).map_err(PlaneError::Address)?,
            ),
            None => Incoming::Plain(listener),
        };
        let server = tokio::spawn(serve(incoming, app, shutdown_rx));
        tracing::info!(%local_addr, scheme = ctx.scheme, region = %config.region, data_dir = %config.data_dir.display(), "ecs-local listening");
        Ok(Self {
            ctx,
            shutdown: shutdown_tx,
            server: Some(server),
            loops,
        })
    }

    /// The address the plane listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.ctx.local_addr
    }

    /// `http://<address>` (`https://` under TLS), for `--endpoint-url`
    /// and SDK `endpoint_url`.
    pub fn endpoint_url(&self) -> String {
        format!("{}://{}", self.ctx.scheme, self.ctx.local_addr)
    }

    /// The state, for inspection and for tests that seed recorded data.
    pub fn store(&self) -> &Store {
        &self.ctx.store
    }

    /// The ARN builder of the plane's account and region.
    pub fn arns(&self) -> &ArnBuilder {
        &self.ctx.arns
    }

    /// The latest TCS telemetry of a container instance (id or ARN).
    pub fn telemetry(&self, instance: &str) -> Option<InstanceTelemetry> {
        self.ctx.tcs.latest(instance)
    }

    /// Refreshes the credentials that are due at `now` (epoch seconds) and
    /// pushes them to the connected agents, as the plane does on its own
    /// every tenth of the credentials lifetime; returns how many sets were
    /// refreshed.
    pub fn refresh_credentials(&self, now: f64) -> usize {
        self.ctx.acs.refresh_credentials(now)
    }

    /// Sends pending payloads to an instance's agent (after a test changed
    /// the state directly).
    pub fn deliver(&self, instance: &str) {
        self.ctx.acs.deliver(arn::resource_id(instance));
    }

    /// Sends the instance's agent a task manifest now, as the plane does
    /// every `task_manifest_interval`; returns its message id, or `None`
    /// when the agent is not connected.
    pub fn send_manifest(&self, instance: &str) -> Option<String> {
        self.ctx.acs.send_manifest(arn::resource_id(instance))
    }

    /// The last task manifest sent to an instance (id or ARN).
    pub fn last_manifest(&self, instance: &str) -> Option<acs_hub::ManifestSent> {
        self.ctx.acs.last_manifest(arn::resource_id(instance))
    }

    /// Closes the websockets, stops accepting requests and waits for the
    /// server to finish.
    pub async fn shutdown(mut self) -> Result<(), PlaneError> {
        let _ = self.shutdown.send(true);
        let served = match self.server.take() {
            Some(server) => server.await.map_err(PlaneError::Join)?,
            None => Ok(()),
        };
        self.release().await;
        served
    }

    /// Waits for the background loops and the websocket connections to let
    /// go of the state, so that the database is closed when this returns
    /// (a plane started again on the same data directory can open it). A
    /// connection that takes longer than a few seconds is left behind.
    async fn release(&mut self) {
        for handle in self.loops.drain(..) {
            let _ = handle.await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&self.ctx) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Serves until the server stops or `signal` completes, then shuts down.
    pub async fn run_until(
        mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> Result<(), PlaneError> {
        let Some(mut server) = self.server.take() else {
            return Ok(());
        };
        let served = tokio::select! {
            result = &mut server => result.map_err(PlaneError::Join)?,
            () = signal => {
                let _ = self.shutdown.send(true);
                server.await.map_err(PlaneError::Join)?
            }
        };
        let _ = self.shutdown.send(true);
        self.release().await;
        served
    }
}

/// Where connections come from: the port as it is, or through TLS.
enum Incoming {
    Plain(TcpListener),
    Tls(tls::TlsListener),
}

/// The address a request came from, as handlers extract it
/// (`ConnectInfo<Peer>`), whichever way it connected.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub(crate) SocketAddr);

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, tls::TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tls::TlsListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

/// Serves `app` until `stop` turns true, then lets the open requests
/// finish.
async fn serve(
    incoming: Incoming,
    app: Router,
    mut stop: watch::Receiver<bool>,
) -> Result<(), PlaneError> {
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let app = app.into_make_service_with_connect_info::<Peer>();
    match incoming {
        Incoming::Plain(listener) => axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
            .map_err(PlaneError::Serve),
        Incoming::Tls(listener) => axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
            .map_err(PlaneError::Serve),
    }
}

/// Refreshes credentials half-way through their life, every `tick`, until
/// the plane shuts down.
fn spawn_credentials_refresher(ctx: Arc<Context>, tick: Duration) -> JoinHandle<()> {
    let mut stop = ctx.shutdown.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                _ = interval.tick() => false,
                _ = stop.wait_for(|s| *s) => true,
            };
            if stopping {
                break;
            }
            ctx.blocking(|ctx| ctx.acs.refresh_credentials(clock::epoch_seconds()))
                .await;
        }
    })
}

/// Runs the service scheduler (crate::services) every `interval`, and at
/// once when woken, until the plane shuts down. A pass with no service to
/// look after touches nothing.
fn spawn_service_scheduler(ctx: Arc<Context>, interval: Duration) -> JoinHandle<()> {
    let mut stop = ctx.shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = ctx.services_wake.notified() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            let pass = ctx
                .blocking(|ctx| {
                    let deliver = service_pass(ctx)?;
                    for instance in deliver {
                        ctx.acs.deliver(&instance);
                    }
                    Ok::<_, StoreError>(())
                })
                .await;
            if let Some(Err(e)) = pass {
                tracing::error!(error = %e, "service scheduler pass failed");
            }
        }
    })
}

/// Forgets long-stopped tasks every `interval` until the plane shuts down.
fn spawn_pruner(ctx: Arc<Context>, interval: Duration) -> JoinHandle<()> {
    let mut stop = ctx.shutdown.clone();
    tokio::spawn(async move {
        loop {
            let stopping = tokio::select! {
                () = tokio::time::sleep(interval) => false,
                _ = stop.wait_for(|s| *s) => true,
            };
            if stopping {
                break;
            }
            let pruned = ctx
                .blocking(|ctx| {
                    ctx.store.update(|st| {
                        let before = st.tasks.len();
                        st.prune_stopped_tasks(clock::epoch_seconds());
                        Ok::<_, StoreError>(before - st.tasks.len())
                    })
                })
                .await;
            match pruned {
                Some(Ok(0)) | None => {}
                Some(Ok(n)) => tracing::info!(tasks = n, "forgot tasks stopped over an hour ago"),
                Some(Err(e)) => tracing::error!(error = %e, "cannot prune stopped tasks"),
            }
        }
    })
}

/// One pass of the service scheduler: the instances to deliver to.
fn service_pass(ctx: &Context) -> Result<Vec<String>, StoreError> {
    let busy = ctx.store.read(|st| {
        st.services
            .values()
            .any(|s| s.status() != services::INACTIVE)
    });
    if !busy {
        return Ok(Vec::new());
    }
    let now = clock::epoch_seconds();
    ctx.store.update(|st| {
        let pass = services::reconcile(&ctx.arns, st, now, ctx.credentials_ttl);
        Ok(pass.deliver.into_iter().collect())
    })
}

impl Drop for Plane {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// `GET /healthz`: liveness. 200 `ok` once the state can be read (the
/// lock is not stuck); nothing is checked beyond that.
async fn healthz(
    axum::extract::State(ctx): axum::extract::State<Arc<Context>>,
) -> impl axum::response::IntoResponse {
    let ready = ctx
        .blocking(|ctx| ctx.store.read(|st| st.clusters.len()))
        .await
        .is_some();
    if ready {
        (axum::http::StatusCode::OK, "ok\n")
    } else {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "unavailable\n")
    }
}

/// `GET /metrics`: the task and container utilisation agents last
/// published (crate::metrics_page), then the plane's own series
/// (crate::plane_metrics), in Prometheus's text format.
async fn metrics_page_handler(
    axum::extract::State(ctx): axum::extract::State<Arc<Context>>,
) -> impl axum::response::IntoResponse {
    let page = ctx
        .blocking(|ctx| {
            let sources = plane_metrics::Sources {
                api: &ctx.api_metrics,
                payloads_sent: ctx.acs.payloads_sent.get(),
                payloads_acked: ctx.acs.payloads_acked.get(),
                payloads_resent: ctx.acs.payloads_resent.get(),
                tcs_frames: ctx.tcs.frames_received.get(),
                store_writes: ctx.store.write_latency(),
            };
            let mut page = ctx.tcs.metrics.render();
            page.push_str(&ctx.store.read(|st| plane_metrics::render(st, &sources)));
            page
        })
        .await
        .unwrap_or_default();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        page,
    )
}

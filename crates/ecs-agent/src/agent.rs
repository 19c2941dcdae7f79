//! Start-up and shutdown of the whole agent (docs/architecture.md §9,
//! docs/endpoints.md §4): Docker, instance metadata, the checkpoint,
//! registration, then the engine, the reporter and the ACS and TCS
//! sessions, until a termination signal arrives or a performed agent
//! update asks the process to end (exit code 42, docs/protocols.md §4.9).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use crate::acs::{self, AcsContext};
use crate::backoff::Backoff;
use crate::capabilities;
use crate::config::{Config, Env, DEFAULT_CLUSTER};
use crate::credentials::{CredentialsStore, RolePolicy};
use crate::docker::{DockerApi, DockerClient};
use crate::ecs_client::{ApiError, EcsClient, RegistrationRequest};
use crate::endpoints::audit::AuditLog;
use crate::endpoints::tmds::{self, throttle::Throttle};
use crate::endpoints::{introspection, AgentView, TaskEndpointDeps, TaskSource};
use crate::engine::actions::ActionSettings;
use crate::engine::{EngineHandle, EngineSettings, TaskEngine};
use crate::exit::ExitCode;
use crate::flags::Flags;
use crate::host;
use crate::images::{EngineAuth, ImageManager, ImageSettings};
use crate::imds::{self, InstanceMetadata};
use crate::metadata_file::MetadataFiles;
use crate::metrics::{Collector, Kernel};
use crate::reporter::{self, EcsSink};
use crate::store::{keys, Store};
use crate::supervisor::Supervisor;
use crate::tcs::{self, AgentTcsHost, TcsContext, TcsSettings};
use crate::update::{Downloader, UpdateExit, UpdateSettings, Updater};
use crate::version;

/// Why the agent stopped before running, and what the supervisor should do.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("Docker: {0}")]
    Docker(#[from] crate::docker::DockerError),
    #[error("Docker API version {0} is older than the minimum 1.21")]
    DockerTooOld(String),
    #[error("Configuration key not set, key: AWSRegion (set AWS_DEFAULT_REGION, or enable instance metadata)")]
    NoRegion,
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Takeover(#[from] crate::go_state::takeover::TakeoverError),
    #[error("data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cluster mismatch: the saved state is for cluster {saved:?}, but the configured cluster is {configured:?}")]
    ClusterMismatch { saved: String, configured: String },
    #[error("host resources: {0}")]
    Host(#[from] host::HostError),
    #[error("registration rejected: {0}")]
    RegistrationRejected(ApiError),
    #[error("registration failed: {0}")]
    Registration(ApiError),
}

impl StartError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            StartError::Takeover(e) if e.is_retryable() => ExitCode::Error,
            StartError::DockerTooOld(_)
            | StartError::Store(_)
            | StartError::Takeover(_)
            | StartError::ClusterMismatch { .. }
            | StartError::RegistrationRejected(_) => ExitCode::Terminal,
            _ => ExitCode::Error,
        }
    }
}

/// Whether instance metadata may be used at all.
pub fn imds_enabled(config: &Config, flags: &Flags, env: &Env) -> bool {
    let disabled_by_env = env
        .get("AWS_EC2_METADATA_DISABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    !(config.external || flags.blackhole_ec2_metadata || disabled_by_env)
}

/// Runs the agent until SIGTERM/SIGINT, or until a performed update asks
/// it to end; returns the exit code.
pub async fn run(mut config: Config, flags: &Flags, env: &Env) -> Result<ExitCode, StartError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    // One switch for both ways of ending: a signal, or an update.
    let stop_tx = Arc::new(stop_tx);
    let update_exit = UpdateExit::new(stop_tx.clone());
    let signals = tokio::spawn(wait_for_signal(stop_tx));

    let docker = DockerClient::connect(&config.docker_endpoint).await?;
    let engine_version = docker.version().await?;
    let api = capabilities::parse_api_version(&engine_version.api_version)
        .ok_or_else(|| StartError::DockerTooOld(engine_version.api_version.clone()))?;
    if api < (1, 21) {
        return Err(StartError::DockerTooOld(engine_version.api_version));
    }

    let task_cgroups = task_cgroups(&config, &docker, api).await;

    let metadata = InstanceMetadata::new(
        imds_enabled(&config, flags, env),
        env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT"),
    );
    let identity = if config.no_iid || !metadata.enabled() {
        None
    } else {
        metadata.identity_document().await
    };
    let region = config
        .aws_region
        .clone()
        .or_else(|| identity.as_ref().and_then(|d| d.field("region")))
        .ok_or(StartError::NoRegion)?;
    config.aws_region = Some(region.clone());
    if config.external {
        tracing::info!("ECS Agent is running in external mode.");
    }

    let store = open_store(&config).await?;
    let configured_cluster = config.cluster_or_default().to_string();
    if let Some(saved) = store.get_meta(keys::CLUSTER).await? {
        if saved != configured_cluster {
            return Err(StartError::ClusterMismatch {
                saved,
                configured: configured_cluster,
            });
        }
        tracing::info!(cluster = saved, "Cluster was successfully restored");
    }

    let credentials = imds::credentials_provider(metadata.enabled(), &region).await;
    let os_family = config
        .detailed_os_family
        .clone()
        .unwrap_or_else(|| "LINUX".to_string());
    let ecs = EcsClient::new(
        config.api_endpoint.as_deref(),
        &region,
        credentials.clone(),
        version::user_agent(&os_family),
        config.accept_insecure_cert,
    );

    let resources = host::read_host_resources(config.reserved_memory_mib)?;
    let saved_arn = store.get_meta(keys::CONTAINER_INSTANCE_ARN).await?;
    let mut request = RegistrationRequest {
        cluster: configured_cluster.clone(),
        existing_arn: saved_arn.clone(),
        attributes: capabilities::attributes(
            &config,
            api,
            saved_arn.is_none(),
            task_cgroups.is_some(),
        ),
        resources,
        reserved_ports: config.reserved_ports.clone(),
        reserved_ports_udp: config.reserved_ports_udp.clone(),
        identity_document: identity
            .as_ref()
            .map(|d| d.document.clone())
            .unwrap_or_default(),
        identity_signature: identity
            .as_ref()
            .map(|d| d.signature.clone())
            .unwrap_or_default(),
        tags: config
            .container_instance_tags
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    match &saved_arn {
        Some(arn) => tracing::info!(
            containerInstanceARN = arn,
            cluster = configured_cluster,
            "Restored from checkpoint file"
        ),
        None => tracing::info!("Registering Instance with ECS"),
    }
    let registration = register(&ecs, &mut request, config.cluster.is_empty()).await?;
    // On re-registration the saved ARN stays (docs/protocols.md §2.2).
    let instance_arn = saved_arn.unwrap_or(registration.container_instance_arn);
    let mut meta = vec![
        (keys::CONTAINER_INSTANCE_ARN, instance_arn.clone()),
        (keys::CLUSTER, configured_cluster.clone()),
        (keys::AGENT_VERSION, version::VERSION.to_string()),
    ];
    if let Some(az) = &registration.availability_zone {
        meta.push((keys::AVAILABILITY_ZONE, az.clone()));
    }
    if let Some(id) = identity.as_ref().and_then(|d| d.field("instanceId")) {
        meta.push((keys::EC2_INSTANCE_ID, id));
    }
    store.put_meta(meta).await?;
    tracing::info!(
        instanceArn = instance_arn,
        cluster = configured_cluster,
        "Instance registration completed successfully"
    );

    let engine_docker: Arc<dyn DockerApi> = Arc::new(docker.clone());
    let images = ImageManager::new(
        engine_docker.clone(),
        store.clone(),
        ImageSettings::from_config(&config),
        EngineAuth::from_config(&config),
    )
    .await?;
    let wake_reporter = Arc::new(Notify::new());
    let role_credentials = Arc::new(CredentialsStore::new());
    let mut supervisor = Supervisor::new(stop_rx.clone());
    let (engine, engine_task) = TaskEngine::start(
        EngineSettings {
            actions: ActionSettings {
                cluster: configured_cluster.clone(),
                region: region.clone(),
                pull_behavior: config.image_pull_behavior,
                images: images.clone(),
                create_timeout: config.container_create_timeout.to_std(),
                start_timeout: config.container_start_timeout.to_std(),
                default_stop_timeout: config.docker_stop_timeout.to_std(),
                privileged_disabled: config.privileged_disabled,
                logging_drivers: config.available_logging_drivers.clone(),
                shared_volume_match_full_config: config.shared_volume_match_full_config,
                docker_slots: crate::engine::slots::DockerSlots::new(
                    crate::engine::slots::DOCKER_SLOTS,
                ),
                task_cgroups: task_cgroups.clone(),
                credentials: role_credentials.clone(),
                aws: Arc::new(crate::aws::AwsServices::new(&region, credentials.clone())),
                metadata_files: config.container_metadata_enabled.then(|| {
                    Arc::new(MetadataFiles {
                        data_dir: config.data_dir.clone(),
                        host_prefix: config.data_dir_on_host.clone(),
                        cluster: configured_cluster.clone(),
                        instance_arn: instance_arn.clone(),
                        availability_zone: registration.availability_zone.clone(),
                    })
                }),
            },
            cleanup_wait: config.task_cleanup_wait.to_std(),
            cleanup_jitter: config.task_cleanup_wait_jitter.to_std(),
            dynamic_host_port_range: config.dynamic_host_port_range,
            reserved_ports: config.reserved_ports.clone(),
            reserved_ports_udp: config.reserved_ports_udp.clone(),
            exclude_ipv6_port_binding: config.exclude_ipv6_port_binding,
        },
        engine_docker,
        store.clone(),
        wake_reporter.clone(),
    )
    .await?;
    supervisor.watch("task engine", engine_task);
    // After the engine start-up, so references are restored before any
    // cycle; the cycles end with the process.
    images.spawn_periodic_cleanup();
    let reporter = tokio::spawn(reporter::run(
        store.clone(),
        Arc::new(EcsSink {
            client: ecs.clone(),
            cluster: configured_cluster.clone(),
        }),
        wake_reporter,
        {
            let engine = engine.clone();
            move |arn: &str| engine.report_settled(arn)
        },
    ));
    let reporter_abort = reporter.abort_handle();
    supervisor.watch("state change reporter", reporter);

    let log_settings = crate::logging::LogSettings::resolve(env, flags);
    let collector = spawn_collector(&supervisor, &config, &engine, &stop_rx);
    spawn_endpoints(
        &supervisor,
        &store,
        &config,
        &log_settings,
        EndpointIdentity {
            cluster: configured_cluster.clone(),
            instance_arn: instance_arn.clone(),
            availability_zone: registration.availability_zone.clone(),
        },
        &engine,
        &docker,
        &ecs,
        &role_credentials,
        &collector,
        &stop_rx,
    );

    let docker_version = Some(engine_version.version).filter(|v| !v.is_empty());
    let acs_heartbeats = Arc::new(Notify::new());
    let tcs = supervisor.watch(
        "TCS session",
        tokio::spawn(tcs::run(
            Arc::new(TcsContext {
                host: Arc::new(AgentTcsHost {
                    ecs: ecs.clone(),
                    cluster: configured_cluster.clone(),
                    instance_arn: instance_arn.clone(),
                    engine: engine.clone(),
                    docker: docker.clone(),
                    collector,
                }),
                credentials: credentials.clone(),
                region: region.clone(),
                cluster: configured_cluster.clone(),
                instance_arn: instance_arn.clone(),
                agent_version: version::VERSION.to_string(),
                agent_hash: version::GIT_HASH.to_string(),
                docker_version: docker_version.clone(),
                accept_insecure_cert: config.accept_insecure_cert,
                disable_metrics: config.disable_metrics,
                acs_heartbeats: acs_heartbeats.clone(),
                settings: TcsSettings::default(),
            }),
            stop_rx.clone(),
        )),
    );

    let (acs_replies_tx, acs_replies) = tokio::sync::mpsc::unbounded_channel();
    let updater = Arc::new(Updater::new(
        UpdateSettings::from_config(&config),
        Downloader::new(version::user_agent(&os_family)),
        acs_replies_tx,
        update_exit.clone(),
    ));
    tracing::info!("Beginning Polling for updates");
    let acs = supervisor.watch(
        "ACS session",
        tokio::spawn(acs::run(
            Arc::new(AcsContext {
                ecs,
                credentials,
                region,
                cluster: configured_cluster,
                instance_arn,
                agent_version: version::VERSION.to_string(),
                agent_hash: version::GIT_HASH.to_string(),
                docker_version,
                engine: engine.clone(),
                store: store.clone(),
                accept_insecure_cert: config.accept_insecure_cert,
                heartbeats: acs_heartbeats,
                role_credentials,
                pending_verification: Arc::default(),
                updater,
                role_policy: RolePolicy {
                    task_roles: config.task_iam_role_enabled,
                    host_network: config.task_iam_role_enabled
                        && config.task_iam_role_enabled_for_network_host,
                },
            }),
            stop_rx,
            acs_replies,
        )),
    );

    if let Some(why) = supervisor.until_stop_or_failure().await {
        tracing::error!("{why}; exiting so the agent is restarted");
        return Ok(ExitCode::Error);
    }
    let _ = acs.await;
    let _ = tcs.await;
    let for_update = update_exit.requested();
    // Every change is already saved as it happens; the engine only has to
    // stop taking new work (docs/endpoints.md §4.2, 5 s budget).
    if tokio::time::timeout(Duration::from_secs(5), engine.shutdown())
        .await
        .is_err()
    {
        tracing::error!(
            "Error saving state before final shutdown: timed out waiting for TaskEngine to settle"
        );
        // Before an update the failure is only logged (docs/endpoints.md
        // §2.3): the staged agent starts from what was saved.
        if !for_update {
            return Ok(ExitCode::Terminal);
        }
    }
    reporter_abort.abort();
    signals.abort();
    if for_update {
        tracing::info!("exiting with code 42 so the supervisor loads the staged agent update");
        return Ok(ExitCode::Update);
    }
    Ok(ExitCode::Success)
}

/// Opens the checkpoint in the data directory (or in memory with
/// checkpointing off) on a blocking thread: opening may upgrade its schema.
async fn open_store(config: &Config) -> Result<Store, StartError> {
    if !config.checkpoint {
        tracing::info!("Checkpointing not enabled; a new container instance will be created each time the agent is run");
        return Ok(Store::in_memory()?);
    }
    let dir = config.data_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|source| StartError::DataDir {
        path: dir.display().to_string(),
        source,
    })?;
    let cluster = config.cluster_or_default().to_string();
    tokio::task::spawn_blocking(move || open_or_take_over(&dir, &cluster))
        .await
        .map_err(|e| crate::store::StoreError::Worker(e.to_string()))?
}

/// This agent's checkpoint in `dir`: its own, or the one agent 0.1.0 left
/// as `agent.db`, or, on a host where the Go agent ran and this agent has
/// none yet, one made from the Go agent's state (docs/operations.md §11).
fn open_or_take_over(dir: &std::path::Path, cluster: &str) -> Result<Store, StartError> {
    use crate::go_state::takeover;
    if !Store::exists_in(dir) {
        Store::adopt_old_location(dir)?;
    }
    if !Store::exists_in(dir) && takeover::go_state_in(dir) {
        let (store, taken) = takeover::take_over(dir, cluster)?;
        tracing::info!(
            cluster = taken.cluster,
            containerInstanceARN = taken.instance_arn,
            tasks = taken.tasks,
            running = taken.running_tasks,
            containers = taken.containers,
            images = taken.images,
            checkpoint = store.file(),
            "took over the Go agent's state; its agent.db is left as it was"
        );
        return Ok(store);
    }
    Ok(Store::open(dir)?)
}

/// Who the instance is, as the endpoints show it.
struct EndpointIdentity {
    cluster: String,
    instance_arn: String,
    availability_zone: Option<String>,
}

/// Starts introspection and the task endpoint; they run
/// until `stop` (docs/endpoints.md §4.1: only after registration).
/// Task cgroups, when `ECS_ENABLE_TASK_CPU_MEM_LIMIT` is not false, Docker's
/// API is 1.22 or later and Docker uses the `cgroupfs` driver (the
/// `systemd` driver needs slices made through systemd, not built yet;
/// docs/engine.md §7.7). Without them, task-level limits are ignored and
/// the capability is not advertised.
async fn task_cgroups(
    config: &Config,
    docker: &DockerClient,
    api: (u32, u32),
) -> Option<Arc<crate::task_cgroup::TaskCgroups>> {
    if config.task_cpu_mem_limit == crate::config::Bool3::Disabled || api < (1, 22) {
        return None;
    }
    match docker.cgroup_driver().await {
        Ok(driver) if driver == "cgroupfs" => {}
        Ok(driver) => {
            tracing::warn!(
                driver,
                "task-level CPU and memory limits are off: they need Docker's cgroupfs driver"
            );
            return None;
        }
        Err(e) => {
            tracing::warn!(error = %e, "task-level CPU and memory limits are off: docker info failed");
            return None;
        }
    }
    let period_us = u64::try_from(config.cgroup_cpu_period.to_std().as_micros()).unwrap_or(100_000);
    let cgroups = crate::task_cgroup::TaskCgroups::new(
        std::path::Path::new(&config.cgroup_path),
        period_us,
        (config.task_pids_limit > 0).then(|| u64::from(config.task_pids_limit)),
    );
    if let Err(e) = cgroups.init() {
        tracing::warn!(error = %e, "task-level CPU and memory limits are off: the cgroup hierarchy cannot be written");
        return None;
    }
    Some(Arc::new(cgroups))
}

/// The metrics collector: read on one interval for TCS unless metrics are
/// disabled; read on request by the task metadata endpoint either way
/// (docs/metrics.md).
fn spawn_collector(
    supervisor: &Supervisor,
    config: &Config,
    engine: &EngineHandle,
    stop: &watch::Receiver<bool>,
) -> Arc<Collector> {
    let interval = if config.poll_metrics {
        config.polling_metrics_wait.to_std()
    } else {
        crate::metrics::STREAM_INTERVAL
    };
    let collector = Collector::new(Kernel::host(), interval);
    if !config.disable_metrics {
        let engine = engine.clone();
        supervisor.watch(
            "metrics collector",
            tokio::spawn(collector.clone().run(
                move || {
                    let engine = engine.clone();
                    async move { engine.metric_targets().await.ok() }
                },
                stop.clone(),
            )),
        );
    }
    collector
}

#[allow(clippy::too_many_arguments)]
fn spawn_endpoints(
    supervisor: &Supervisor,
    store: &Store,
    config: &Config,
    log_settings: &crate::logging::LogSettings,
    identity: EndpointIdentity,
    engine: &EngineHandle,
    docker: &DockerClient,
    ecs: &EcsClient,
    role_credentials: &Arc<CredentialsStore>,
    collector: &Arc<Collector>,
    stop: &watch::Receiver<bool>,
) {
    let view = AgentView {
        cluster: identity.cluster.clone(),
        instance_arn: identity.instance_arn.clone(),
        availability_zone: identity.availability_zone,
        tasks: TaskSource::Engine(engine.clone()),
        checkpoint: store.health(),
    };
    supervisor.watch(
        "introspection endpoint",
        tokio::spawn(introspection::run(
            view.clone(),
            Some(docker.clone()),
            stop.clone(),
        )),
    );
    let audit_file = (!config.credentials_audit_log_disabled)
        .then(|| std::path::PathBuf::from(&config.credentials_audit_log_file));
    let audit = AuditLog::new(
        audit_file,
        // By size like the main log, or hourly (docs/endpoints.md §10).
        log_settings.audit_rollover,
        log_settings.max_roll_count,
        &identity.cluster,
        &identity.instance_arn,
    );
    let deps = TaskEndpointDeps {
        view,
        credentials: role_credentials.clone(),
        docker: Some(docker.clone()),
        ecs: Some(ecs.clone()),
        stats: collector.clone(),
        audit: Arc::new(audit),
        throttle: Arc::new(Throttle::new(
            config.task_metadata_steady_state_rate,
            config.task_metadata_burst_rate,
        )),
        az_disabled: config.task_metadata_az_disabled,
    };
    supervisor.watch("task endpoint", tokio::spawn(tmds::run(deps, stop.clone())));
}

async fn wait_for_signal(stop: Arc<watch::Sender<bool>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "terminated",
        _ = int.recv() => "interrupt",
    };
    tracing::info!("Agent received termination signal: {name}");
    stop.send_replace(true);
}

/// RegisterContainerInstance with the Go agent's retry rules
/// (docs/protocols.md §2.2): transient errors retry with backoff for up to
/// an hour; a missing default cluster is created once.
async fn register(
    ecs: &EcsClient,
    request: &mut RegistrationRequest,
    cluster_unconfigured: bool,
) -> Result<crate::ecs_client::Registration, StartError> {
    let started = Instant::now();
    let mut backoff = Backoff::new(Duration::from_secs(3), Duration::from_secs(192), 2.0, 0.2);
    let mut created_cluster = false;
    loop {
        match ecs.register(request).await {
            Ok(r) => return Ok(r),
            Err(ApiError::ClusterNotFound(_)) if cluster_unconfigured && !created_cluster => {
                tracing::info!("default cluster not found; creating it");
                ecs.create_cluster(DEFAULT_CLUSTER)
                    .await
                    .map_err(StartError::Registration)?;
                created_cluster = true;
            }
            Err(e @ ApiError::Rejected { .. }) => return Err(StartError::RegistrationRejected(e)),
            Err(ApiError::Transient(why)) if started.elapsed() < Duration::from_secs(3600) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = why, ?delay, "registration failed; retrying");
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(StartError::Registration(e)),
        }
    }
}

/// `-ecs-attributes`: the attributes this agent would register with.
pub async fn print_attributes(config: &Config) -> Result<(), StartError> {
    let docker = DockerClient::connect(&config.docker_endpoint).await?;
    let v = docker.version().await?;
    let api = capabilities::parse_api_version(&v.api_version)
        .ok_or_else(|| StartError::DockerTooOld(v.api_version.clone()))?;
    let task_cgroups = task_cgroups(config, &docker, api).await.is_some();
    for a in capabilities::attributes(config, api, true, task_cgroups) {
        println!("{}\t{}", a.name, a.value.unwrap_or_default());
    }
    Ok(())
}

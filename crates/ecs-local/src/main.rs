//! The `ecs-local` binary: command-line flags, logging, and running the
//! plane until SIGINT or SIGTERM.
#![forbid(unsafe_code)]

use anyhow::Context as _;
use clap::Parser;
use ecs_local::log_format::{JsonLines, LogFormat};
use ecs_local::{credentials, tls, Config, Plane};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A local Amazon ECS control plane: the ECS API for the AWS CLI and SDKs,
/// and the ACS and TCS websockets for ECS agents, on one port.
///
/// Tasks with a taskRoleArn or executionRoleArn get fake IAM role
/// credentials, valid for ECS_LOCAL_CREDENTIALS_TTL seconds (default 3600)
/// and refreshed at half of that; GET /_local/v1/task-credentials?task=ARN
/// (from this host only) shows them.
#[derive(Debug, Parser)]
#[command(name = "ecs-local", version)]
struct Args {
    /// Address to listen on, for example 127.0.0.1:8000.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Directory for the state database state.redb (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// Region used in ARNs and as the availability zone prefix.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Seconds between ACS/TCS heartbeats (1 to 30; agents drop a silent
    /// connection after 60 s).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=30))]
    heartbeat_interval: u64,
    /// Seconds between the task manifests (the list of tasks that should be
    /// RUNNING) sent to each connected agent, which then asks to stop the
    /// tasks it runs that are not listed (1 to 86400).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
    task_manifest_interval: u64,
    /// A tar file to offer as the agent update: UpdateContainerAgent stages
    /// it on the instance's agent, which downloads it from this plane
    /// (GET /agent-updates/<sha256>.tar) and exits with code 42 to install
    /// it. Without it, UpdateContainerAgent answers
    /// NoUpdateAvailableException.
    #[arg(long, value_name = "FILE")]
    agent_update_bundle: Option<PathBuf>,
    /// Passed to agents as ecrAuthData.endpointOverride for images in an
    /// Amazon ECR registry (<account>.dkr.ecr.<region>.amazonaws.com/…),
    /// so their GetAuthorizationToken calls go there (a stand-in for ECR,
    /// say). Without it, agents use ECR's regional endpoint.
    #[arg(long, value_name = "URL")]
    ecr_endpoint_override: Option<String>,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Verify the SigV4 signature of every ECS API request and ACS/TCS
    /// upgrade against the key pairs of --credentials; unsigned or badly
    /// signed requests are refused.
    #[arg(long, requires = "credentials")]
    require_auth: bool,
    /// An AWS shared credentials file: every profile's aws_access_key_id
    /// and aws_secret_access_key pair is accepted (~/.aws/credentials works
    /// as it is).
    #[arg(long, value_name = "FILE")]
    credentials: Option<PathBuf>,
    /// Log lines as text, or as one JSON object each (time, level, target,
    /// message and the event's fields).
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Serve HTTPS and WSS with this certificate chain (PEM, server
    /// certificate first); needs --tls-key.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS and WSS with a certificate issued at each start by a CA
    /// kept in the data dir (ca.pem, made at the first start): give
    /// clients ca.pem to trust (AWS_CA_BUNDLE, the AWS CLI's --ca-bundle),
    /// or run agents with -k.
    #[arg(long)]
    tls_self_signed: bool,
    /// Another name (DNS name or IP address) the self-signed certificate
    /// covers, besides localhost, 127.0.0.1, ::1 and the --listen address
    /// (or this host's name when listening on every address); repeatable.
    #[arg(long, value_name = "NAME", requires = "tls_self_signed")]
    tls_name: Vec<String>,
    /// A DNS name the web console may be addressed by: it refuses requests
    /// for other names, so that a web page cannot reach it through DNS
    /// rebinding. IP addresses, localhost, this host's name and every
    /// --tls-name always count; repeatable.
    #[arg(long, value_name = "NAME")]
    host_name: Vec<String>,
}

/// The names the console may be addressed by: this host's, and those the
/// flags give.
fn host_names(args: &Args) -> Vec<String> {
    let mut names: Vec<String> = args
        .host_name
        .iter()
        .chain(&args.tls_name)
        .cloned()
        .collect();
    names.extend(tls::host_name());
    names
}

/// The server configuration the TLS flags ask for, if any.
fn tls_config(args: &Args) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        return Ok(Some(tls::from_pem_files(cert, key)?));
    }
    if !args.tls_self_signed {
        return Ok(None);
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create --data-dir {}", args.data_dir.display()))?;
    let mut names = tls::default_names(args.listen.ip());
    names.extend(args.tls_name.iter().cloned());
    let made = tls::self_signed(&args.data_dir, &names)?;
    tracing::info!(
        ca = %made.ca_path.display(),
        new_ca = made.new_ca,
        ?names,
        "serving TLS with a certificate of the plane's own CA"
    );
    Ok(Some(made.config))
}

fn valid_region(region: &str) -> bool {
    !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("ecs-local: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .with_context(|| format!("invalid --log-level {:?}", args.log_level))?;
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.event_format(JsonLines).init(),
    }
    if !valid_region(&args.region) {
        anyhow::bail!(
            "invalid --region {:?}: expected something like us-east-1",
            args.region
        );
    }
    if args
        .ecr_endpoint_override
        .as_deref()
        .is_some_and(|url| url.trim().is_empty())
    {
        anyhow::bail!("--ecr-endpoint-override must not be empty");
    }
    let require_auth = match (&args.credentials, args.require_auth) {
        (Some(path), true) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --credentials {}", path.display()))?;
            let keys = ecs_local::auth::Keys::from_credentials_file(&text)
                .map_err(|e| anyhow::anyhow!("--credentials {}: {e}", path.display()))?;
            tracing::info!(
                key_pairs = keys.len(),
                "requests must be signed (--require-auth)"
            );
            Some(keys)
        }
        (Some(_), false) => anyhow::bail!("--credentials is only used with --require-auth"),
        _ => None,
    };
    if !args.listen.ip().is_loopback() && require_auth.is_none() {
        // Without --require-auth nothing is authenticated: anyone who
        // reaches the port can run containers on the agents' hosts.
        tracing::warn!(
            listen = %args.listen,
            "listening beyond loopback: every caller that reaches this address can use the ECS API and run containers"
        );
    }
    let tls = tls_config(&args)?;
    let names = host_names(&args);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let ttl_env = std::env::var(credentials::TTL_ENV).ok();
    let credentials_ttl = credentials::ttl_from(ttl_env.as_deref()).map_err(anyhow::Error::msg)?;
    let mut config = Config::new(&args.data_dir);
    config.region = args.region;
    config.heartbeat_interval = Duration::from_secs(args.heartbeat_interval);
    config.credentials_ttl = credentials_ttl;
    config.task_manifest_interval = Duration::from_secs(args.task_manifest_interval);
    config.agent_update_bundle = args.agent_update_bundle;
    config.ecr_endpoint_override = args.ecr_endpoint_override;
    config.require_auth = require_auth;
    config.tls = tls;
    config.host_names = names;
    let plane = Plane::start(listener, config)
        .await
        .with_context(|| format!("cannot start with data dir {}", args.data_dir.display()))?;
    if args.log_format == LogFormat::Text {
        // In JSON mode every line of output is a JSON object; the log has
        // the address too.
        println!("ecs-local listening on {}", plane.endpoint_url());
    }
    plane.run_until(shutdown_signal()).await?;
    Ok(())
}

//! `ecs-agent`: the process entry point. Parses the Go-style flags, handles
//! the print-and-exit commands, sets up logging and configuration, and runs
//! the agent, mapping every outcome to the exit codes the supervisor knows.

use std::process::ExitCode as ProcessExit;
use std::time::Duration;

use ecs_agent::config::{Config, Env};
use ecs_agent::exit::ExitCode;
use ecs_agent::flags::{self, Command, FlagError};
use ecs_agent::logging::{self, LogSettings};
use ecs_agent::memory::{Tuning, ALLOCATOR_TUNABLES};
use ecs_agent::{agent, host_setup, version};

fn exit(code: ExitCode) -> ProcessExit {
    ProcessExit::from(u8::try_from(code.code()).unwrap_or(1))
}

fn main() -> ProcessExit {
    let tuning = ecs_agent::memory::tune_allocator();
    let flags = match flags::parse(std::env::args().skip(1)) {
        Ok(f) => f,
        Err(FlagError::Help) => {
            eprint!("{}", flags::USAGE);
            return exit(ExitCode::Terminal);
        }
        Err(e) => {
            eprintln!("{e}");
            eprint!("{}", flags::USAGE);
            return exit(ExitCode::Terminal);
        }
    };
    if flags.license {
        print!("{}", ecs_agent::endpoints::introspection::license_text());
        return exit(ExitCode::Success);
    }
    if flags.version {
        print!("{}", version::version_block());
        return exit(ExitCode::Success);
    }
    let env = Env::from_process();
    if flags.healthcheck {
        let host = env.get("ECS_AGENT_HEALTHCHECK_HOST").unwrap_or("localhost");
        return exit(healthcheck(host));
    }
    match flags.command {
        Some(Command::Host(command)) => return exit(host_setup::main(command)),
        Some(Command::ExportGoState) => return exit(ecs_agent::go_state::handback::main()),
        Some(Command::Init(verb)) => return exit(ecs_agent::init::main(verb)),
        None => {}
    }

    let log_settings = LogSettings::resolve(&env, &flags);
    if let Err(e) = logging::init(&log_settings) {
        eprintln!("cannot open the log file: {e}");
    }
    // A panic anywhere ends the process, so the init system restarts it
    // rather than leaving an agent that no longer acks (docs/architecture.md §3.1).
    ecs_agent::supervisor::exit_on_panic();
    tracing::info!(
        version = version::VERSION,
        commit = version::GIT_HASH,
        "Starting Amazon ECS Agent"
    );
    match tuning {
        Tuning::Tuned => tracing::debug!(tunables = ALLOCATOR_TUNABLES, "allocator tuned"),
        Tuning::Theirs(tunables) => tracing::info!(
            tunables,
            "GLIBC_TUNABLES is set: the agent's allocator settings are not applied"
        ),
        Tuning::Failed(e) => tracing::warn!(
            error = %e,
            "could not start again with the allocator settings; glibc's defaults apply"
        ),
        Tuning::Unsupported => {}
    }
    tracing::info!("Loading configuration");
    let mut config = match Config::load(&env) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                tracing::warn!("{w}");
            }
            for name in loaded.config.unsupported_settings() {
                tracing::warn!("{}", Config::unsupported_setting_warning(name));
            }
            loaded.config
        }
        Err(e) => {
            tracing::error!("{e}");
            return exit(ExitCode::Error);
        }
    };
    if flags.accept_insecure_cert {
        tracing::warn!("SSL certificate verification disabled. This is not recommended.");
        config.accept_insecure_cert = true;
    }
    // As every AWS SDK does; read before the first TLS client is built.
    if let Some(path) = env.get("AWS_CA_BUNDLE").filter(|p| !p.is_empty()) {
        match ecs_agent::trust::CaBundle::load(std::path::Path::new(path)) {
            Ok(bundle) => {
                tracing::info!(path, "trusting the certificates of AWS_CA_BUNDLE");
                ecs_agent::trust::trust_ca_bundle(bundle);
            }
            Err(e) => {
                tracing::error!("{e}");
                return exit(ExitCode::Error);
            }
        }
    }
    tracing::debug!(
        cluster = config.cluster,
        region = config.aws_region.as_deref().unwrap_or(""),
        data_dir = %config.data_dir.display(),
        checkpoint = config.checkpoint,
        "Loaded config"
    );
    if flags.windows_service {
        tracing::error!("-windows-service is not supported on Linux");
        return exit(ExitCode::Error);
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return exit(ExitCode::Error);
        }
    };
    if flags.ecs_attributes {
        return match runtime.block_on(agent::print_attributes(&config)) {
            Ok(()) => exit(ExitCode::Success),
            Err(e) => {
                tracing::error!("{e}");
                exit(ExitCode::Error)
            }
        };
    }
    let code = match runtime.block_on(agent::run(config, &flags, &env)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e}");
            e.exit_code()
        }
    };
    runtime.shutdown_timeout(Duration::from_secs(1));
    exit(code)
}

/// `-healthcheck`: any HTTP answer from the introspection endpoint counts
/// as healthy; only a transport failure or timeout does not.
fn healthcheck(host: &str) -> ExitCode {
    use std::io::{Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};
    let timeout = Duration::from_secs(25);
    let attempt = || -> std::io::Result<()> {
        let addr = (host, 51678)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        write!(
            stream,
            "HEAD /v1/metadata HTTP/1.1\r\nHost: {host}:51678\r\nConnection: close\r\n\r\n"
        )?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        if head.starts_with(b"HTTP/") {
            Ok(())
        } else {
            Err(std::io::Error::other("not an HTTP response"))
        }
    };
    match attempt() {
        Ok(()) => ExitCode::Success,
        Err(e) => {
            eprintln!("health check failed: {e}");
            ExitCode::Error
        }
    }
}

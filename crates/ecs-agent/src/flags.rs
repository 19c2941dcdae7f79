//! Command-line flags, parsed the way Go's `flag` package does: one or two
//! leading dashes, `-name=value` or `-name value`, bool flags only as `-name`
//! or `-name=true|false`, and parsing stops at the first non-flag argument.
//! That argument is ignored, as Go ignores it, unless it names one of the
//! agent's own commands (`host-setup`, `host-teardown`, `export-go-state`).

/// What the command line asks for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Flags {
    pub license: bool,
    pub version: bool,
    pub healthcheck: bool,
    pub loglevel: Option<String>,
    pub loglevel_driver: Option<String>,
    pub loglevel_on_instance: Option<String>,
    pub accept_insecure_cert: bool,
    pub blackhole_ec2_metadata: bool,
    pub ecs_attributes: bool,
    pub windows_service: bool,
    /// A command to run instead of the agent.
    pub command: Option<Command>,
}

/// The agent's own commands, each run instead of the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// A host duty of ecs-init's (`host_setup.rs`).
    Host(Subcommand),
    /// Hands the host back to the Go agent: writes its `agent.db` from this
    /// agent's checkpoint (`go_state/handback.rs`).
    ExportGoState,
    /// The init service (`init/mod.rs`): `init <verb>`.
    Init(crate::init::Verb),
}

impl Command {
    pub fn name(self) -> &'static str {
        match self {
            Command::Host(c) => c.name(),
            Command::ExportGoState => "export-go-state",
            Command::Init(_) => "init",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        if name == Command::ExportGoState.name() {
            return Some(Command::ExportGoState);
        }
        Subcommand::from_name(name).map(Command::Host)
    }
}

/// Commands the Go agent does not have; they replace ecs-init's host duties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subcommand {
    /// Sysctls and iptables rules for the local endpoints (ecs-init pre-start).
    HostSetup,
    /// Undoes `HostSetup` (ecs-init post-stop).
    HostTeardown,
}

impl Subcommand {
    pub fn name(self) -> &'static str {
        match self {
            Subcommand::HostSetup => "host-setup",
            Subcommand::HostTeardown => "host-teardown",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [Subcommand::HostSetup, Subcommand::HostTeardown]
            .into_iter()
            .find(|c| c.name() == name)
    }
}

/// A command line the agent cannot run with; it exits 5 after printing usage.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlagError {
    #[error("flag provided but not defined: -{0}")]
    Unknown(String),
    #[error("flag needs an argument: -{0}")]
    MissingValue(String),
    #[error("invalid boolean value {value:?} for -{name}")]
    InvalidBool { name: String, value: String },
    #[error("help requested")]
    Help,
    #[error("{command} takes no arguments, got {argument:?}")]
    CommandArgument { command: String, argument: String },
    #[error("init needs one of pre-start, start, stop or post-stop, got {0:?}")]
    InitVerb(Option<String>),
}

pub const USAGE: &str = "Usage of ecs-agent:
  -blackhole-ec2-metadata
    \tBlackhole EC2 metadata requests (the region must then come from the environment or config file)
  -ecs-attributes
    \tPrint the container instance attributes this agent registers with, then exit
  -healthcheck
    \tRun the agent healthcheck against the introspection endpoint, then exit
  -k\tDisable SSL certificate verification. We do not recommend setting this option
  -license
    \tPrint the license text, then exit
  -loglevel string
    \tLog level for the console and the log file (debug, info, warn, error, crit, none)
  -loglevel-driver string
    \tLog level for the console, used when -loglevel is empty
  -loglevel-on-instance string
    \tLog level for the log file, used when -loglevel is empty
  -version
    \tPrint the agent version, then exit
  -windows-service
    \tRun as a Windows service (not supported on Linux)
Commands (after the flags; each runs instead of the agent, then exits):
  host-setup
    \tSet up this host's sysctls and iptables rules for the agent's endpoints, as ecs-init does
  host-teardown
    \tRemove what host-setup set up
  export-go-state
    \tHand this host back to the Go ECS agent 1.105: write its agent.db in ECS_DATADIR from this agent's state (stop this agent first)
  init pre-start|start|stop|post-stop
    \tThe init service, as ecs-init: set up the host, run and restart the agent, install staged updates, stop it, undo the set-up
";

enum Kind {
    Bool(fn(&mut Flags, bool)),
    Text(fn(&mut Flags, String)),
}

fn lookup(name: &str) -> Option<Kind> {
    Some(match name {
        "license" => Kind::Bool(|f, v| f.license = v),
        "version" => Kind::Bool(|f, v| f.version = v),
        "healthcheck" => Kind::Bool(|f, v| f.healthcheck = v),
        "k" => Kind::Bool(|f, v| f.accept_insecure_cert = v),
        "blackhole-ec2-metadata" => Kind::Bool(|f, v| f.blackhole_ec2_metadata = v),
        "ecs-attributes" => Kind::Bool(|f, v| f.ecs_attributes = v),
        "windows-service" => Kind::Bool(|f, v| f.windows_service = v),
        "loglevel" => Kind::Text(|f, v| f.loglevel = Some(v)),
        "loglevel-driver" => Kind::Text(|f, v| f.loglevel_driver = Some(v)),
        "loglevel-on-instance" => Kind::Text(|f, v| f.loglevel_on_instance = Some(v)),
        _ => return None,
    })
}

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Flags, FlagError> {
    let mut flags = Flags::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        let Some(body) = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|b| !b.is_empty() && !b.starts_with('-') && !b.starts_with('='))
        else {
            // The first non-flag argument: the rest is ignored, unless it
            // names a command.
            if arg == "init" {
                let verb = args.next();
                let parsed = verb.as_deref().and_then(crate::init::Verb::from_name);
                match (parsed, args.next()) {
                    (Some(v), None) => flags.command = Some(Command::Init(v)),
                    (Some(_), Some(extra)) => {
                        return Err(FlagError::CommandArgument {
                            command: format!("init {}", verb.unwrap_or_default()),
                            argument: extra,
                        })
                    }
                    (None, _) => return Err(FlagError::InitVerb(verb)),
                }
            } else if let Some(command) = Command::from_name(&arg) {
                if let Some(extra) = args.next() {
                    return Err(FlagError::CommandArgument {
                        command: arg,
                        argument: extra,
                    });
                }
                flags.command = Some(command);
            }
            break;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        if name == "h" || name == "help" {
            return Err(FlagError::Help);
        }
        match lookup(name) {
            None => return Err(FlagError::Unknown(name.to_string())),
            Some(Kind::Bool(set)) => {
                let value = match inline {
                    None => true,
                    Some(v) => {
                        crate::config::value::go_bool(&v).map_err(|_| FlagError::InvalidBool {
                            name: name.to_string(),
                            value: v.clone(),
                        })?
                    }
                };
                set(&mut flags, value);
            }
            Some(Kind::Text(set)) => {
                let value = match inline {
                    Some(v) => v,
                    None => args
                        .next()
                        .ok_or_else(|| FlagError::MissingValue(name.to_string()))?,
                };
                set(&mut flags, value);
            }
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn p(args: &[&str]) -> Result<Flags, FlagError> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn go_style_single_and_double_dash() {
        let f = p(&["-k", "-loglevel", "debug"]).unwrap();
        assert!(f.accept_insecure_cert);
        assert_eq!(f.loglevel.as_deref(), Some("debug"));
        let f = p(&["--loglevel=warn", "--version"]).unwrap();
        assert_eq!(f.loglevel.as_deref(), Some("warn"));
        assert!(f.version);
        assert!(!p(&["-k=false"]).unwrap().accept_insecure_cert);
    }

    #[test]
    fn stops_at_first_non_flag() {
        let f = p(&["-k", "run", "-version"]).unwrap();
        assert!(f.accept_insecure_cert && !f.version);
    }

    #[test]
    fn commands_after_flags() {
        let f = p(&["host-setup"]).unwrap();
        assert_eq!(f.command, Some(Command::Host(Subcommand::HostSetup)));
        let f = p(&["-k", "--loglevel=debug", "host-teardown"]).unwrap();
        assert_eq!(f.command, Some(Command::Host(Subcommand::HostTeardown)));
        assert!(f.accept_insecure_cert);
        assert_eq!(f.loglevel.as_deref(), Some("debug"));
        let f = p(&["export-go-state"]).unwrap();
        assert_eq!(f.command, Some(Command::ExportGoState));
        assert!(matches!(
            p(&["export-go-state", "now"]),
            Err(FlagError::CommandArgument { .. })
        ));
        // Other words are ignored, as Go ignores them; so is a command
        // after `--` or after another word.
        assert_eq!(p(&["run"]).unwrap().command, None);
        assert_eq!(p(&["--", "host-setup"]).unwrap().command, None);
        assert_eq!(p(&["run", "host-setup"]).unwrap().command, None);
        assert!(matches!(
            p(&["host-setup", "-k"]),
            Err(FlagError::CommandArgument { .. })
        ));
    }

    #[test]
    fn init_takes_one_verb() {
        use crate::init::Verb;
        assert_eq!(
            p(&["init", "start"]).unwrap().command,
            Some(Command::Init(Verb::Start))
        );
        assert_eq!(
            p(&["-loglevel=debug", "init", "pre-stop"]).unwrap().command,
            Some(Command::Init(Verb::Stop))
        );
        assert_eq!(p(&["init"]), Err(FlagError::InitVerb(None)));
        assert_eq!(
            p(&["init", "reload-cache"]),
            Err(FlagError::InitVerb(Some("reload-cache".into())))
        );
        assert!(matches!(
            p(&["init", "start", "now"]),
            Err(FlagError::CommandArgument { .. })
        ));
    }

    #[test]
    fn errors() {
        assert_eq!(p(&["-nope"]), Err(FlagError::Unknown("nope".into())));
        assert_eq!(p(&["-h"]), Err(FlagError::Help));
        assert_eq!(p(&["-help"]), Err(FlagError::Help));
        assert_eq!(
            p(&["-loglevel"]),
            Err(FlagError::MissingValue("loglevel".into()))
        );
        assert!(matches!(
            p(&["-k=maybe"]),
            Err(FlagError::InvalidBool { .. })
        ));
    }
}

//! `ecs-agent host-setup` and `ecs-agent host-teardown`: the host set-up
//! that ecs-init performs around the Go agent (docs/endpoints.md §12), for
//! hosts where this agent runs without ecs-init.
//!
//! Set-up turns on `net.ipv4.conf.all.route_localnet`, turns off router
//! advertisements on `docker0` when that key exists, and installs the
//! iptables rules that send `169.254.170.2:80` to the credentials endpoint
//! and keep the introspection port on the host. Tear-down removes the
//! rules and restores `route_localnet` from the `default` key.
//!
//! The rules are a pure [`Plan`] built from the settings and a few facts
//! about the host, so they can be checked without root; [`apply_setup`] and
//! [`apply_teardown`] run a plan against any [`RuleTable`], and
//! [`IptablesCommands`] is the real one, running `iptables`/`ip6tables`
//! through [`std::process::Command`]. Both directions are idempotent: a
//! rule is added only when `iptables -C` does not find it, and removed for
//! as long as it is found.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::value::go_bool;
use crate::config::{Config, ConfigError, Env};
use crate::exit::ExitCode;
use crate::flags::Subcommand;

/// The link-local address containers use for credentials and metadata.
pub const CREDENTIALS_PROXY_IP: &str = "169.254.170.2";
/// The port containers use on [`CREDENTIALS_PROXY_IP`].
pub const CREDENTIALS_PROXY_PORT: u16 = 80;
/// The agent's introspection port (fixed in the Go agent), where the
/// endpoints listen.
pub const INTROSPECTION_PORT: u16 = crate::endpoints::INTROSPECTION_PORT;
/// The agent's credentials and task metadata port (fixed in the Go agent),
/// where the endpoints listen.
pub const CREDENTIALS_PORT: u16 = crate::endpoints::TASK_ENDPOINT_PORT;
/// The file ecs-init's systemd unit loads as its environment.
pub const ECS_CONFIG_FILE: &str = "/etc/ecs/ecs.config";

const SKIP_LOCALHOST_FILTER_ENV: &str = "ECS_SKIP_LOCALHOST_TRAFFIC_FILTER";
const ALLOW_OFFHOST_ENV: &str = "ECS_ALLOW_OFFHOST_INTROSPECTION_ACCESS";
const DEFAULT_DOCKER_BRIDGE: &str = "docker0";
const LOCALHOST_NETWORK: &str = "127.0.0.0/8";
const ROUTE_LOCALNET_ALL: &str = "net.ipv4.conf.all.route_localnet";
const ROUTE_LOCALNET_DEFAULT: &str = "net.ipv4.conf.default.route_localnet";
const DOCKER0_ACCEPT_RA: &str = "net.ipv6.conf.docker0.accept_ra";
/// `IFF_LOOPBACK` in `/sys/class/net/<if>/flags`.
const IFF_LOOPBACK: u32 = 0x8;
/// Directories searched after `PATH`: the firewall tools live in sbin.
const SBIN_DIRS: [&str; 4] = ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin"];
/// A guard against a rule table that never stops reporting a rule.
const MAX_DELETES_PER_RULE: usize = 64;

/// Why host set-up or tear-down failed; the command exits 1.
#[derive(Debug, thiserror::Error)]
pub enum HostSetupError {
    #[error("must run as root (effective uid is {0}): iptables and /proc/sys need it")]
    NotRoot(u32),
    #[error("cannot tell which user this is: {0}")]
    Uid(String),
    #[error("{0} is not installed or not on PATH (on Debian: apt-get install iptables)")]
    MissingTool(&'static str),
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },
    #[error(
        "`{command}` still finds the rule after {} deletions",
        MAX_DELETES_PER_RULE
    )]
    RuleStuck { command: String },
    #[error("cannot read {path}: {source}")]
    ReadSysctl {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {value} to {path}: {source}")]
    WriteSysctl {
        path: String,
        value: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds {value:?}, not an integer")]
    ParseSysctl { path: String, value: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<HostSetupError>),
}

/// What the configuration says about the host set-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `ECS_SKIP_LOCALHOST_TRAFFIC_FILTER`: leave out the INPUT rule that
    /// drops outside traffic to 127.0.0.0/8.
    pub skip_localhost_traffic_filter: bool,
    /// `ECS_ALLOW_OFFHOST_INTROSPECTION_ACCESS`: leave out the rules that
    /// keep the introspection port on the host.
    pub allow_offhost_introspection_access: bool,
    pub introspection_port: u16,
    pub credentials_port: u16,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            skip_localhost_traffic_filter: false,
            allow_offhost_introspection_access: false,
            introspection_port: INTROSPECTION_PORT,
            credentials_port: CREDENTIALS_PORT,
        }
    }
}

impl Settings {
    /// Reads the two ecs-init switches as ecs-init does: Go booleans, and a
    /// value that is not one means false (with a warning).
    pub fn from_env(env: &Env) -> (Self, Vec<String>) {
        let mut warnings = Vec::new();
        let mut flag = |name: &str| match env.get(name) {
            None => false,
            Some(v) => go_bool(v).unwrap_or_else(|e| {
                warnings.push(format!("{name}: {e}; using false"));
                false
            }),
        };
        let settings = Self {
            skip_localhost_traffic_filter: flag(SKIP_LOCALHOST_FILTER_ENV),
            allow_offhost_introspection_access: flag(ALLOW_OFFHOST_ENV),
            ..Self::default()
        };
        (settings, warnings)
    }
}

/// The facts about the host that the rules depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// The loopback interface's name (`lo` almost everywhere).
    pub loopback: String,
    /// Docker's default bridge, when it exists.
    pub docker_bridge: Option<String>,
    /// `/proc/sys/net/ipv6` exists: IPv6 rules are wanted too.
    pub ipv6: bool,
}

impl HostFacts {
    /// Looks at `/sys/class/net` and `/proc/sys` under the given roots.
    pub fn detect(sys_class_net: &Path, proc_sys: &Path) -> Self {
        Self {
            loopback: find_loopback(sys_class_net).unwrap_or_else(|| "lo".to_string()),
            docker_bridge: sys_class_net
                .join(DEFAULT_DOCKER_BRIDGE)
                .exists()
                .then(|| DEFAULT_DOCKER_BRIDGE.to_string()),
            ipv6: proc_sys.join("net/ipv6").exists(),
        }
    }
}

fn find_loopback(sys_class_net: &Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(sys_class_net)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    names.into_iter().find(|name| {
        std::fs::read_to_string(sys_class_net.join(name).join("flags"))
            .ok()
            .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
            .is_some_and(|flags| flags & IFF_LOOPBACK != 0)
    })
}

/// Which firewall tool a rule belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn program(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }
}

/// Where a new rule goes in its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// `-A`: at the end.
    Append,
    /// `-I`: at the top.
    Insert,
}

/// One iptables rule: table, chain and match/target arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub family: Family,
    pub table: &'static str,
    pub chain: &'static str,
    pub position: Position,
    pub spec: Vec<String>,
    /// The index, in the same plan, of a rule this one must stay above.
    pub above: Option<usize>,
}

impl Rule {
    /// Arguments for `iptables`, with `action` one of `-A`, `-I`, `-C`, `-D`.
    pub fn args(&self, action: &str) -> Vec<String> {
        let mut args = vec![
            "-w".to_string(),
            "-t".to_string(),
            self.table.to_string(),
            action.to_string(),
            self.chain.to_string(),
        ];
        args.extend(self.spec.iter().cloned());
        args
    }

    pub fn add_action(&self) -> &'static str {
        match self.position {
            Position::Append => "-A",
            Position::Insert => "-I",
        }
    }
}

impl Rule {
    /// The command that does `action` (`-A`, `-I`, `-D`) with this rule,
    /// as a person would type it (without `-w`).
    pub fn command(&self, action: &str) -> String {
        format!(
            "{} -t {} {} {} {}",
            self.family.program(),
            self.table,
            action,
            self.chain,
            self.spec.join(" ")
        )
    }
}

/// Shown as the command that adds the rule, without `-w`.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.command(self.add_action()))
    }
}

fn spec(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| p.to_string()).collect()
}

/// The rules, in the order they are applied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub rules: Vec<Rule>,
}

impl Plan {
    fn push(&mut self, rule: Rule) -> usize {
        self.rules.push(rule);
        self.rules.len() - 1
    }

    /// The rules `host-setup` adds, in ecs-init's order (docs/endpoints.md §12).
    pub fn setup(settings: &Settings, facts: &HostFacts) -> Self {
        Self::build(settings, facts, false)
    }

    /// The rules `host-teardown` removes: every rule `host-setup` could have
    /// added, whatever the switches say now, so a configuration changed
    /// between the two still leaves nothing behind.
    pub fn teardown(settings: &Settings, facts: &HostFacts) -> Self {
        Self::build(settings, facts, true)
    }

    fn build(settings: &Settings, facts: &HostFacts, everything: bool) -> Self {
        let mut plan = Plan::default();
        let proxy_port = CREDENTIALS_PROXY_PORT.to_string();
        let credentials_port = settings.credentials_port.to_string();
        let introspection_port = settings.introspection_port.to_string();
        plan.push(Rule {
            family: Family::V4,
            table: "nat",
            chain: "PREROUTING",
            position: Position::Append,
            spec: spec(&[
                "-p",
                "tcp",
                "-d",
                CREDENTIALS_PROXY_IP,
                "--dport",
                &proxy_port,
                "-j",
                "DNAT",
                "--to-destination",
                &format!("127.0.0.1:{credentials_port}"),
            ]),
            above: None,
        });
        if everything || !settings.skip_localhost_traffic_filter {
            plan.push(Rule {
                family: Family::V4,
                table: "filter",
                chain: "INPUT",
                position: Position::Insert,
                spec: spec(&[
                    "--dst",
                    LOCALHOST_NETWORK,
                    "!",
                    "--src",
                    LOCALHOST_NETWORK,
                    "-m",
                    "conntrack",
                    "!",
                    "--ctstate",
                    "RELATED,ESTABLISHED,DNAT",
                    "-j",
                    "DROP",
                ]),
                above: None,
            });
        }
        if everything || !settings.allow_offhost_introspection_access {
            let families: &[Family] = if facts.ipv6 {
                &[Family::V4, Family::V6]
            } else {
                &[Family::V4]
            };
            let bridge = match (&facts.docker_bridge, everything) {
                (Some(b), _) => Some(b.as_str()),
                // The bridge may be gone by tear-down; its rule may not.
                (None, true) => Some(DEFAULT_DOCKER_BRIDGE),
                (None, false) => None,
            };
            for &family in families {
                let drop = plan.push(Rule {
                    family,
                    table: "filter",
                    chain: "INPUT",
                    position: Position::Insert,
                    spec: spec(&[
                        "-p",
                        "tcp",
                        "--dport",
                        &introspection_port,
                        "!",
                        "-i",
                        &facts.loopback,
                        "-j",
                        "DROP",
                    ]),
                    above: None,
                });
                if let Some(bridge) = bridge {
                    plan.push(Rule {
                        family,
                        table: "filter",
                        chain: "INPUT",
                        position: Position::Insert,
                        spec: spec(&[
                            "-p",
                            "tcp",
                            "--dport",
                            &introspection_port,
                            "-i",
                            bridge,
                            "-j",
                            "ACCEPT",
                        ]),
                        above: Some(drop),
                    });
                }
            }
        }
        plan.push(Rule {
            family: Family::V4,
            table: "nat",
            chain: "OUTPUT",
            position: Position::Append,
            spec: spec(&[
                "-p",
                "tcp",
                "-d",
                CREDENTIALS_PROXY_IP,
                "--dport",
                &proxy_port,
                "-j",
                "REDIRECT",
                "--to-ports",
                &credentials_port,
            ]),
            above: None,
        });
        plan
    }
}

/// A place rules live in: the real firewall, or a fake in tests.
pub trait RuleTable {
    /// Whether the tool for this family is installed; rules of a missing
    /// optional family (IPv6) are skipped.
    fn available(&self, family: Family) -> bool;
    fn exists(&mut self, rule: &Rule) -> Result<bool, HostSetupError>;
    fn add(&mut self, rule: &Rule) -> Result<(), HostSetupError>;
    fn delete(&mut self, rule: &Rule) -> Result<(), HostSetupError>;
}

/// What happened to one rule; `Display` is the word printed before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleOutcome {
    Added,
    AlreadyPresent,
    /// Present, but deleted and inserted again to sit above a rule added now.
    MovedUp,
    Removed(usize),
    Absent,
    /// ip6tables is not installed.
    Skipped,
}

impl fmt::Display for RuleOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleOutcome::Added => f.write_str("added"),
            RuleOutcome::AlreadyPresent => f.write_str("already present"),
            RuleOutcome::MovedUp => f.write_str("re-added above the rule added now"),
            RuleOutcome::Removed(1) => f.write_str("removed"),
            RuleOutcome::Removed(n) => write!(f, "removed ({n} copies)"),
            RuleOutcome::Absent => f.write_str("absent"),
            RuleOutcome::Skipped => f.write_str("skipped (ip6tables is not installed)"),
        }
    }
}

/// One line per rule: set-up shows the command that adds it, tear-down the
/// one that deletes it.
fn report(out: &mut dyn Write, outcome: RuleOutcome, rule: &Rule, action: &str) {
    // A closed stdout must not turn a done set-up into a failure.
    let _ = writeln!(out, "{outcome}: {}", rule.command(action));
}

/// Adds every rule of the plan that is not there yet, stopping at the first
/// error (as ecs-init does). IPv4 rules need iptables; IPv6 rules are
/// skipped when ip6tables is missing.
pub fn apply_setup(
    plan: &Plan,
    table: &mut dyn RuleTable,
    out: &mut dyn Write,
) -> Result<Vec<RuleOutcome>, HostSetupError> {
    let mut outcomes: Vec<RuleOutcome> = Vec::with_capacity(plan.rules.len());
    for rule in &plan.rules {
        let outcome = if !table.available(rule.family) {
            if rule.family == Family::V4 {
                return Err(HostSetupError::MissingTool("iptables"));
            }
            RuleOutcome::Skipped
        } else if table.exists(rule)? {
            let below_new_rule = rule
                .above
                .and_then(|i| outcomes.get(i))
                .is_some_and(|o| *o == RuleOutcome::Added);
            if below_new_rule {
                delete_all(table, rule)?;
                table.add(rule)?;
                RuleOutcome::MovedUp
            } else {
                RuleOutcome::AlreadyPresent
            }
        } else {
            table.add(rule)?;
            RuleOutcome::Added
        };
        report(out, outcome, rule, rule.add_action());
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

fn delete_all(table: &mut dyn RuleTable, rule: &Rule) -> Result<usize, HostSetupError> {
    let mut removed = 0;
    while table.exists(rule)? {
        if removed == MAX_DELETES_PER_RULE {
            return Err(HostSetupError::RuleStuck {
                command: format!("{} {}", rule.family.program(), rule.args("-C").join(" ")),
            });
        }
        table.delete(rule)?;
        removed += 1;
    }
    Ok(removed)
}

/// Removes every copy of every rule in the plan, carrying on past errors
/// so one bad rule does not leave the others behind.
pub fn apply_teardown(
    plan: &Plan,
    table: &mut dyn RuleTable,
    out: &mut dyn Write,
) -> Result<Vec<RuleOutcome>, HostSetupError> {
    let mut outcomes = Vec::with_capacity(plan.rules.len());
    let mut errors = Vec::new();
    for rule in &plan.rules {
        if !table.available(rule.family) {
            if rule.family == Family::V4 {
                return Err(HostSetupError::MissingTool("iptables"));
            }
            report(out, RuleOutcome::Skipped, rule, "-D");
            outcomes.push(RuleOutcome::Skipped);
            continue;
        }
        match delete_all(table, rule) {
            Ok(n) => {
                let outcome = if n == 0 {
                    RuleOutcome::Absent
                } else {
                    RuleOutcome::Removed(n)
                };
                report(out, outcome, rule, "-D");
                outcomes.push(outcome);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(outcomes)
    } else {
        Err(HostSetupError::Several(errors))
    }
}

/// The real firewall: `iptables` and `ip6tables` run as child processes,
/// always with `-w` so they wait for the xtables lock.
#[derive(Debug, Clone, Default)]
pub struct IptablesCommands {
    pub iptables: Option<PathBuf>,
    pub ip6tables: Option<PathBuf>,
}

impl IptablesCommands {
    /// Finds the tools on `PATH`, then in the sbin directories.
    pub fn find() -> Self {
        Self {
            iptables: find_program("iptables"),
            ip6tables: find_program("ip6tables"),
        }
    }

    fn program(&self, family: Family) -> Result<&Path, HostSetupError> {
        match family {
            Family::V4 => self.iptables.as_deref(),
            Family::V6 => self.ip6tables.as_deref(),
        }
        .ok_or(HostSetupError::MissingTool(family.program()))
    }

    fn run(&self, rule: &Rule, action: &str) -> Result<std::process::Output, HostSetupError> {
        let program = self.program(rule.family)?;
        Command::new(program)
            .args(rule.args(action))
            .output()
            .map_err(|source| HostSetupError::Spawn {
                program: program.display().to_string(),
                source,
            })
    }

    fn failure(rule: &Rule, action: &str, output: &std::process::Output) -> HostSetupError {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
        HostSetupError::Command {
            command: format!("{} {}", rule.family.program(), rule.args(action).join(" ")),
            status: output.status.to_string(),
            output: text.trim().to_string(),
        }
    }
}

impl RuleTable for IptablesCommands {
    fn available(&self, family: Family) -> bool {
        self.program(family).is_ok()
    }

    fn exists(&mut self, rule: &Rule) -> Result<bool, HostSetupError> {
        let output = self.run(rule, "-C")?;
        if output.status.success() {
            return Ok(true);
        }
        // Exit 1 with "Bad rule (does a matching rule exist in that
        // chain?)" is the one answer that means "not there"; anything else
        // (no such table or match, permission) is a real failure.
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.code() == Some(1)
            && (stderr.trim().is_empty()
                || stderr.contains("does a matching rule exist")
                || stderr.contains("Bad rule"))
        {
            return Ok(false);
        }
        Err(Self::failure(rule, "-C", &output))
    }

    fn add(&mut self, rule: &Rule) -> Result<(), HostSetupError> {
        let action = rule.add_action();
        let output = self.run(rule, action)?;
        if output.status.success() {
            Ok(())
        } else {
            Err(Self::failure(rule, action, &output))
        }
    }

    fn delete(&mut self, rule: &Rule) -> Result<(), HostSetupError> {
        let output = self.run(rule, "-D")?;
        if output.status.success() {
            Ok(())
        } else {
            Err(Self::failure(rule, "-D", &output))
        }
    }
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Kernel parameters under a `/proc/sys` root, read and written directly.
#[derive(Debug, Clone)]
pub struct ProcSys {
    pub root: PathBuf,
}

impl Default for ProcSys {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/proc/sys"),
        }
    }
}

impl ProcSys {
    /// The file for a dotted key such as `net.ipv4.conf.all.route_localnet`.
    pub fn path(&self, key: &str) -> PathBuf {
        self.root.join(key.replace('.', "/"))
    }

    pub fn exists(&self, key: &str) -> bool {
        self.path(key).exists()
    }

    pub fn read(&self, key: &str) -> Result<i64, HostSetupError> {
        let path = self.path(key);
        let text = std::fs::read_to_string(&path).map_err(|source| HostSetupError::ReadSysctl {
            path: path.display().to_string(),
            source,
        })?;
        text.trim()
            .parse()
            .map_err(|_| HostSetupError::ParseSysctl {
                path: path.display().to_string(),
                value: text.trim().to_string(),
            })
    }

    pub fn write(&self, key: &str, value: i64) -> Result<(), HostSetupError> {
        let path = self.path(key);
        std::fs::write(&path, format!("{value}\n")).map_err(|source| HostSetupError::WriteSysctl {
            path: path.display().to_string(),
            value: value.to_string(),
            source,
        })
    }

    /// Sets `key` to `value` and says what it did.
    fn set(&self, key: &str, value: i64, out: &mut dyn Write) -> Result<(), HostSetupError> {
        let before = self.read(key)?;
        if before == value {
            let _ = writeln!(out, "already set: sysctl {key}={value}");
        } else {
            self.write(key, value)?;
            let _ = writeln!(out, "set: sysctl {key}={value} (was {before})");
        }
        Ok(())
    }
}

/// Host set-up steps 1 and 2 (docs/endpoints.md §12): `route_localnet` on, and router
/// advertisements off on `docker0` when that key exists.
pub fn setup_sysctls(sys: &ProcSys, out: &mut dyn Write) -> Result<(), HostSetupError> {
    sys.set(ROUTE_LOCALNET_ALL, 1, out)?;
    if sys.exists(DOCKER0_ACCEPT_RA) {
        sys.set(DOCKER0_ACCEPT_RA, 0, out)?;
    } else {
        let _ = writeln!(
            out,
            "absent: sysctl {DOCKER0_ACCEPT_RA} (no docker0; skipped)"
        );
    }
    Ok(())
}

/// Tear-down of step 1: `all.route_localnet` back to the `default` value.
pub fn restore_sysctls(sys: &ProcSys, out: &mut dyn Write) -> Result<(), HostSetupError> {
    let default = sys.read(ROUTE_LOCALNET_DEFAULT)?;
    let before = sys.read(ROUTE_LOCALNET_ALL)?;
    if before == default {
        let _ = writeln!(
            out,
            "already set: sysctl {ROUTE_LOCALNET_ALL}={default} (the {ROUTE_LOCALNET_DEFAULT} value)"
        );
    } else {
        sys.write(ROUTE_LOCALNET_ALL, default)?;
        let _ = writeln!(
            out,
            "restored: sysctl {ROUTE_LOCALNET_ALL}={default} (from {ROUTE_LOCALNET_DEFAULT}; was {before})"
        );
    }
    Ok(())
}

/// The environment the commands read: the process environment, with
/// `/etc/ecs/ecs.config` filling the variables it leaves unset (as ecs-init's
/// systemd unit loads that file into ecs-init's environment).
pub fn merged_env(
    process: impl IntoIterator<Item = (String, String)>,
    ecs_config: Option<&str>,
) -> Env {
    let mut vars: HashMap<String, String> = ecs_config.map(parse_env_file).unwrap_or_default();
    for (k, v) in process {
        if !v.is_empty() || !vars.contains_key(&k) {
            vars.insert(k, v);
        }
    }
    Env::from_pairs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// `KEY=value` lines as systemd's `EnvironmentFile=` reads them: blank lines
/// and lines starting with `#` or `;` are skipped, the key and value are
/// trimmed, one pair of surrounding quotes is removed, and the last
/// assignment of a key wins.
pub fn parse_env_file(text: &str) -> HashMap<String, String> {
    let mut vars = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() {
            continue;
        }
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        vars.insert(key.to_string(), unquoted.to_string());
    }
    vars
}

/// The effective user id, from `/proc/self/status`.
fn effective_uid() -> Result<u32, HostSetupError> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| HostSetupError::Uid(format!("/proc/self/status: {e}")))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .ok_or_else(|| HostSetupError::Uid("no Uid line in /proc/self/status".into()))
}

/// Runs `host-setup` or `host-teardown` on this host, printing one line
/// per step to `out` and warnings to stderr.
pub fn run(command: Subcommand, out: &mut dyn Write) -> Result<(), HostSetupError> {
    let uid = effective_uid()?;
    if uid != 0 {
        return Err(HostSetupError::NotRoot(uid));
    }
    let ecs_config = std::fs::read_to_string(ECS_CONFIG_FILE).ok();
    let env = merged_env(std::env::vars(), ecs_config.as_deref());
    // The same configuration the agent loads: a configuration the agent
    // would refuse stops set-up, but never tear-down.
    match Config::load(&env) {
        Ok(loaded) => {
            for w in loaded.warnings {
                eprintln!("warning: {w}");
            }
        }
        Err(e) if command == Subcommand::HostTeardown => {
            eprintln!("warning: {e}; removing the host set-up anyway");
        }
        Err(e) => return Err(e.into()),
    }
    let (settings, warnings) = Settings::from_env(&env);
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let facts = HostFacts::detect(Path::new("/sys/class/net"), Path::new("/proc/sys"));
    let sys = ProcSys::default();
    let mut iptables = IptablesCommands::find();
    match command {
        Subcommand::HostSetup => {
            if iptables.iptables.is_none() {
                return Err(HostSetupError::MissingTool("iptables"));
            }
            setup_sysctls(&sys, out)?;
            let outcomes = apply_setup(&Plan::setup(&settings, &facts), &mut iptables, out)?;
            let added = outcomes
                .iter()
                .filter(|o| matches!(o, RuleOutcome::Added | RuleOutcome::MovedUp))
                .count();
            let _ = writeln!(
                out,
                "host set-up done: {added} rule(s) added, {} already present",
                outcomes
                    .iter()
                    .filter(|o| **o == RuleOutcome::AlreadyPresent)
                    .count()
            );
        }
        Subcommand::HostTeardown => {
            let mut errors = Vec::new();
            if let Err(e) = restore_sysctls(&sys, out) {
                errors.push(e);
            }
            match apply_teardown(&Plan::teardown(&settings, &facts), &mut iptables, out) {
                Ok(outcomes) => {
                    let removed = outcomes
                        .iter()
                        .filter(|o| matches!(o, RuleOutcome::Removed(_)))
                        .count();
                    let _ = writeln!(out, "host tear-down done: {removed} rule(s) removed");
                }
                Err(HostSetupError::Several(mut e)) => errors.append(&mut e),
                Err(e) => errors.push(e),
            }
            if !errors.is_empty() {
                return Err(HostSetupError::Several(errors));
            }
        }
    }
    Ok(())
}

/// The command-line entry point: exit 0 when done, 1 with the reason
/// on stderr otherwise.
pub fn main(command: Subcommand) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match run(command, &mut stdout) {
        Ok(()) => ExitCode::Success,
        Err(e) => {
            let _ = stdout.flush();
            eprintln!("ecs-agent {}: {e}", command.name());
            ExitCode::Error
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn facts(docker_bridge: bool, ipv6: bool) -> HostFacts {
        HostFacts {
            loopback: "lo".into(),
            docker_bridge: docker_bridge.then(|| "docker0".to_string()),
            ipv6,
        }
    }

    fn settings(skip_filter: bool, allow_offhost: bool) -> Settings {
        Settings {
            skip_localhost_traffic_filter: skip_filter,
            allow_offhost_introspection_access: allow_offhost,
            ..Settings::default()
        }
    }

    fn shown(plan: &Plan) -> Vec<String> {
        plan.rules.iter().map(ToString::to_string).collect()
    }

    const PREROUTING: &str = "iptables -t nat -A PREROUTING -p tcp -d 169.254.170.2 --dport 80 -j DNAT --to-destination 127.0.0.1:51679";
    const LOCALHOST_FILTER: &str = "iptables -t filter -I INPUT --dst 127.0.0.0/8 ! --src 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP";
    const DROP_V4: &str = "iptables -t filter -I INPUT -p tcp --dport 51678 ! -i lo -j DROP";
    const ACCEPT_V4: &str = "iptables -t filter -I INPUT -p tcp --dport 51678 -i docker0 -j ACCEPT";
    const DROP_V6: &str = "ip6tables -t filter -I INPUT -p tcp --dport 51678 ! -i lo -j DROP";
    const ACCEPT_V6: &str =
        "ip6tables -t filter -I INPUT -p tcp --dport 51678 -i docker0 -j ACCEPT";
    const OUTPUT: &str =
        "iptables -t nat -A OUTPUT -p tcp -d 169.254.170.2 --dport 80 -j REDIRECT --to-ports 51679";

    #[test]
    fn default_plan_follows_ecs_init_order() {
        let plan = Plan::setup(&Settings::default(), &facts(true, true));
        assert_eq!(
            shown(&plan),
            [
                PREROUTING,
                LOCALHOST_FILTER,
                DROP_V4,
                ACCEPT_V4,
                DROP_V6,
                ACCEPT_V6,
                OUTPUT
            ]
        );
        // Each ACCEPT stays above the DROP of its own family.
        assert_eq!(plan.rules[3].above, Some(2));
        assert_eq!(plan.rules[5].above, Some(4));
        assert_eq!(
            plan.rules[0].args("-C"),
            [
                "-w",
                "-t",
                "nat",
                "-C",
                "PREROUTING",
                "-p",
                "tcp",
                "-d",
                "169.254.170.2",
                "--dport",
                "80",
                "-j",
                "DNAT",
                "--to-destination",
                "127.0.0.1:51679"
            ]
        );
    }

    #[test]
    fn plan_for_each_switch_combination() {
        let f = facts(true, false);
        assert_eq!(
            shown(&Plan::setup(&settings(false, false), &f)),
            [PREROUTING, LOCALHOST_FILTER, DROP_V4, ACCEPT_V4, OUTPUT]
        );
        assert_eq!(
            shown(&Plan::setup(&settings(true, false), &f)),
            [PREROUTING, DROP_V4, ACCEPT_V4, OUTPUT]
        );
        assert_eq!(
            shown(&Plan::setup(&settings(false, true), &f)),
            [PREROUTING, LOCALHOST_FILTER, OUTPUT]
        );
        assert_eq!(
            shown(&Plan::setup(&settings(true, true), &f)),
            [PREROUTING, OUTPUT]
        );
        // With IPv6 on, allowing off-host access drops the ip6tables rules too.
        assert_eq!(
            shown(&Plan::setup(&settings(false, true), &facts(true, true))),
            [PREROUTING, LOCALHOST_FILTER, OUTPUT]
        );
    }

    #[test]
    fn plan_without_docker_bridge_or_ipv6() {
        assert_eq!(
            shown(&Plan::setup(&Settings::default(), &facts(false, true))),
            [PREROUTING, LOCALHOST_FILTER, DROP_V4, DROP_V6, OUTPUT]
        );
        assert_eq!(
            shown(&Plan::setup(&Settings::default(), &facts(false, false))),
            [PREROUTING, LOCALHOST_FILTER, DROP_V4, OUTPUT]
        );
    }

    #[test]
    fn plan_uses_detected_loopback_and_configured_ports() {
        let f = HostFacts {
            loopback: "lo0".into(),
            docker_bridge: Some("br-main".into()),
            ipv6: false,
        };
        let s = Settings {
            introspection_port: 1111,
            credentials_port: 2222,
            ..Settings::default()
        };
        let text = shown(&Plan::setup(&s, &f)).join("\n");
        assert!(text.contains("--dport 1111 ! -i lo0 -j DROP"), "{text}");
        assert!(text.contains("--dport 1111 -i br-main -j ACCEPT"), "{text}");
        assert!(text.contains("--to-destination 127.0.0.1:2222"), "{text}");
        assert!(text.contains("--to-ports 2222"), "{text}");
    }

    #[test]
    fn teardown_plan_covers_every_rule_whatever_the_switches() {
        let all = [
            PREROUTING,
            LOCALHOST_FILTER,
            DROP_V4,
            ACCEPT_V4,
            DROP_V6,
            ACCEPT_V6,
            OUTPUT,
        ];
        for (skip, allow) in [(false, false), (true, false), (false, true), (true, true)] {
            // docker0 may be gone by then; its ACCEPT rule is still removed.
            for bridge in [true, false] {
                let plan = Plan::teardown(&settings(skip, allow), &facts(bridge, true));
                assert_eq!(shown(&plan), all, "skip={skip} allow={allow}");
            }
        }
    }

    #[test]
    fn settings_from_env_read_go_booleans() {
        let (s, w) = Settings::from_env(&Env::default());
        assert_eq!(s, Settings::default());
        assert!(w.is_empty());
        let (s, w) = Settings::from_env(&Env::from_pairs([
            ("ECS_SKIP_LOCALHOST_TRAFFIC_FILTER", "true"),
            ("ECS_ALLOW_OFFHOST_INTROSPECTION_ACCESS", "1"),
        ]));
        assert!(s.skip_localhost_traffic_filter && s.allow_offhost_introspection_access);
        assert!(w.is_empty());
        let (s, w) = Settings::from_env(&Env::from_pairs([
            ("ECS_SKIP_LOCALHOST_TRAFFIC_FILTER", "yes"),
            ("ECS_ALLOW_OFFHOST_INTROSPECTION_ACCESS", "False"),
        ]));
        assert!(!s.skip_localhost_traffic_filter && !s.allow_offhost_introspection_access);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("ECS_SKIP_LOCALHOST_TRAFFIC_FILTER"), "{w:?}");
    }

    #[test]
    fn ecs_config_file_fills_what_the_environment_leaves_unset() {
        let file = "# comment\n; another\n\n ECS_ALLOW_OFFHOST_INTROSPECTION_ACCESS = \"true\"\n\
                    ECS_SKIP_LOCALHOST_TRAFFIC_FILTER=true\nECS_CLUSTER='prod'\nno equals sign\n\
                    ECS_CLUSTER='staging'\nEMPTY=\n";
        let parsed = parse_env_file(file);
        assert_eq!(parsed["ECS_ALLOW_OFFHOST_INTROSPECTION_ACCESS"], "true");
        assert_eq!(parsed["ECS_CLUSTER"], "staging", "the last one wins");
        assert_eq!(parsed.len(), 4);
        let env = merged_env(
            [
                (
                    "ECS_SKIP_LOCALHOST_TRAFFIC_FILTER".to_string(),
                    "false".to_string(),
                ),
                ("ECS_CLUSTER".to_string(), String::new()),
            ],
            Some(file),
        );
        assert_eq!(env.get("ECS_SKIP_LOCALHOST_TRAFFIC_FILTER"), Some("false"));
        assert_eq!(
            env.get("ECS_ALLOW_OFFHOST_INTROSPECTION_ACCESS"),
            Some("true")
        );
        assert_eq!(env.get("ECS_CLUSTER"), Some("staging"), "empty is unset");
        assert_eq!(
            merged_env([("A".to_string(), "1".to_string())], None).get("A"),
            Some("1")
        );
    }

    /// An in-memory firewall: chains as ordered lists of rules.
    #[derive(Default)]
    struct FakeTable {
        chains: HashMap<(Family, &'static str, &'static str), Vec<Vec<String>>>,
        no_ip6tables: bool,
        no_iptables: bool,
        calls: Vec<String>,
    }

    impl FakeTable {
        fn chain(&mut self, rule: &Rule) -> &mut Vec<Vec<String>> {
            self.chains
                .entry((rule.family, rule.table, rule.chain))
                .or_default()
        }

        fn count(&mut self, rule: &Rule) -> usize {
            let spec = rule.spec.clone();
            self.chain(rule).iter().filter(|r| **r == spec).count()
        }

        fn total(&self) -> usize {
            self.chains.values().map(Vec::len).sum()
        }
    }

    impl RuleTable for FakeTable {
        fn available(&self, family: Family) -> bool {
            match family {
                Family::V4 => !self.no_iptables,
                Family::V6 => !self.no_ip6tables,
            }
        }
        fn exists(&mut self, rule: &Rule) -> Result<bool, HostSetupError> {
            Ok(self.count(rule) > 0)
        }
        fn add(&mut self, rule: &Rule) -> Result<(), HostSetupError> {
            self.calls.push(format!("add {rule}"));
            let spec = rule.spec.clone();
            let position = rule.position;
            let chain = self.chain(rule);
            match position {
                Position::Append => chain.push(spec),
                Position::Insert => chain.insert(0, spec),
            }
            Ok(())
        }
        fn delete(&mut self, rule: &Rule) -> Result<(), HostSetupError> {
            self.calls.push(format!("delete {rule}"));
            let spec = rule.spec.clone();
            let chain = self.chain(rule);
            let i = chain.iter().position(|r| *r == spec).unwrap();
            chain.remove(i);
            Ok(())
        }
    }

    fn lines(out: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(out)
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn setup_twice_adds_each_rule_once() {
        let plan = Plan::setup(&Settings::default(), &facts(true, true));
        let mut table = FakeTable::default();
        let mut out = Vec::new();
        let first = apply_setup(&plan, &mut table, &mut out).unwrap();
        assert_eq!(first, vec![RuleOutcome::Added; 7]);
        assert_eq!(lines(&out)[0], format!("added: {PREROUTING}"));
        let mut out = Vec::new();
        let second = apply_setup(&plan, &mut table, &mut out).unwrap();
        assert_eq!(second, vec![RuleOutcome::AlreadyPresent; 7]);
        assert_eq!(lines(&out)[6], format!("already present: {OUTPUT}"));
        assert_eq!(table.total(), 7);
        for rule in &plan.rules {
            assert_eq!(table.count(rule), 1, "{rule}");
        }
        // INPUT, top down: ACCEPT on docker0, DROP off loopback, localhost filter.
        let input = &table.chains[&(Family::V4, "filter", "INPUT")];
        assert_eq!(input[0], plan.rules[3].spec);
        assert_eq!(input[1], plan.rules[2].spec);
        assert_eq!(input[2], plan.rules[1].spec);
    }

    #[test]
    fn setup_keeps_accept_above_a_drop_added_later() {
        let plan = Plan::setup(&Settings::default(), &facts(true, false));
        let mut table = FakeTable::default();
        // A half-done earlier run left only the ACCEPT rule.
        table.add(&plan.rules[3]).unwrap();
        let outcomes = apply_setup(&plan, &mut table, &mut Vec::new()).unwrap();
        assert_eq!(outcomes[2], RuleOutcome::Added);
        assert_eq!(outcomes[3], RuleOutcome::MovedUp);
        let input = &table.chains[&(Family::V4, "filter", "INPUT")];
        assert_eq!(input.len(), 3);
        assert_eq!(input[0], plan.rules[3].spec, "ACCEPT is on top");
        assert_eq!(input[1], plan.rules[2].spec);
    }

    #[test]
    fn setup_skips_ipv6_without_ip6tables_and_fails_without_iptables() {
        let plan = Plan::setup(&Settings::default(), &facts(true, true));
        let mut table = FakeTable {
            no_ip6tables: true,
            ..FakeTable::default()
        };
        let mut out = Vec::new();
        let outcomes = apply_setup(&plan, &mut table, &mut out).unwrap();
        assert_eq!(outcomes[4], RuleOutcome::Skipped);
        assert_eq!(outcomes[5], RuleOutcome::Skipped);
        assert_eq!(table.total(), 5);
        assert!(lines(&out)[4].starts_with("skipped (ip6tables is not installed): ip6tables"));

        let mut table = FakeTable {
            no_iptables: true,
            ..FakeTable::default()
        };
        let err = apply_setup(&plan, &mut table, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, HostSetupError::MissingTool("iptables")));
        assert!(
            err.to_string().contains("iptables is not installed"),
            "{err}"
        );
        let err = apply_teardown(&plan, &mut table, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, HostSetupError::MissingTool("iptables")));
    }

    #[test]
    fn teardown_removes_every_copy_and_is_idempotent() {
        let f = facts(true, true);
        let setup = Plan::setup(&settings(false, false), &f);
        let mut table = FakeTable::default();
        // Set up, plus a duplicate left by some older tool.
        apply_setup(&setup, &mut table, &mut Vec::new()).unwrap();
        table.add(&setup.rules[0]).unwrap();
        // Someone else's rule in the same chain stays.
        let foreign = Rule {
            spec: spec(&["-p", "udp", "-j", "ACCEPT"]),
            ..setup.rules[1].clone()
        };
        table.add(&foreign).unwrap();

        let teardown = Plan::teardown(&settings(true, true), &f);
        let mut out = Vec::new();
        let outcomes = apply_teardown(&teardown, &mut table, &mut out).unwrap();
        assert_eq!(outcomes[0], RuleOutcome::Removed(2));
        assert!(outcomes[1..].iter().all(|o| *o == RuleOutcome::Removed(1)));
        let deleting = |shown: &str| {
            shown
                .replacen(" -A ", " -D ", 1)
                .replacen(" -I ", " -D ", 1)
        };
        assert_eq!(
            lines(&out)[0],
            format!("removed (2 copies): {}", deleting(PREROUTING))
        );
        assert_eq!(
            lines(&out)[1],
            "removed: iptables -t filter -D INPUT --dst 127.0.0.0/8 ! --src 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"
        );
        assert_eq!(table.total(), 1);
        assert_eq!(table.count(&foreign), 1);

        let mut out = Vec::new();
        let outcomes = apply_teardown(&teardown, &mut table, &mut out).unwrap();
        assert_eq!(outcomes, vec![RuleOutcome::Absent; 7]);
        assert_eq!(lines(&out)[6], format!("absent: {}", deleting(OUTPUT)));
    }

    #[test]
    fn teardown_after_partial_setup() {
        let f = facts(true, false);
        let plan = Plan::setup(&Settings::default(), &f);
        let mut table = FakeTable::default();
        table.add(&plan.rules[0]).unwrap();
        let outcomes = apply_teardown(
            &Plan::teardown(&Settings::default(), &f),
            &mut table,
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(outcomes[0], RuleOutcome::Removed(1));
        assert!(outcomes[1..].iter().all(|o| *o == RuleOutcome::Absent));
        assert_eq!(table.total(), 0);
    }

    fn fake_proc_sys(docker0: bool, all: &str, default: &str) -> (tempfile::TempDir, ProcSys) {
        let dir = tempfile::tempdir().unwrap();
        let sys = ProcSys {
            root: dir.path().to_path_buf(),
        };
        for (key, value) in [(ROUTE_LOCALNET_ALL, all), (ROUTE_LOCALNET_DEFAULT, default)] {
            std::fs::create_dir_all(sys.path(key).parent().unwrap()).unwrap();
            std::fs::write(sys.path(key), value).unwrap();
        }
        if docker0 {
            let key = DOCKER0_ACCEPT_RA;
            std::fs::create_dir_all(sys.path(key).parent().unwrap()).unwrap();
            std::fs::write(sys.path(key), "1\n").unwrap();
        }
        (dir, sys)
    }

    #[test]
    fn sysctls_set_and_restored() {
        let (_dir, sys) = fake_proc_sys(true, "0\n", "0\n");
        let mut out = Vec::new();
        setup_sysctls(&sys, &mut out).unwrap();
        assert_eq!(sys.read(ROUTE_LOCALNET_ALL).unwrap(), 1);
        assert_eq!(sys.read(DOCKER0_ACCEPT_RA).unwrap(), 0);
        assert_eq!(
            lines(&out),
            [
                "set: sysctl net.ipv4.conf.all.route_localnet=1 (was 0)",
                "set: sysctl net.ipv6.conf.docker0.accept_ra=0 (was 1)"
            ]
        );
        let mut out = Vec::new();
        setup_sysctls(&sys, &mut out).unwrap();
        assert!(lines(&out).iter().all(|l| l.starts_with("already set")));

        let mut out = Vec::new();
        restore_sysctls(&sys, &mut out).unwrap();
        assert_eq!(sys.read(ROUTE_LOCALNET_ALL).unwrap(), 0);
        assert!(lines(&out)[0].starts_with("restored: "), "{out:?}");
        let mut out = Vec::new();
        restore_sysctls(&sys, &mut out).unwrap();
        assert!(lines(&out)[0].starts_with("already set: "));
    }

    #[test]
    fn missing_docker0_key_is_not_an_error_but_missing_route_localnet_is() {
        let (dir, sys) = fake_proc_sys(false, "1", "1");
        let mut out = Vec::new();
        setup_sysctls(&sys, &mut out).unwrap();
        assert_eq!(
            lines(&out),
            [
                "already set: sysctl net.ipv4.conf.all.route_localnet=1",
                "absent: sysctl net.ipv6.conf.docker0.accept_ra (no docker0; skipped)"
            ]
        );
        let empty = ProcSys {
            root: dir.path().join("nothing"),
        };
        assert!(matches!(
            setup_sysctls(&empty, &mut Vec::new()),
            Err(HostSetupError::ReadSysctl { .. })
        ));
        std::fs::write(sys.path(ROUTE_LOCALNET_DEFAULT), "x").unwrap();
        let err = restore_sysctls(&sys, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, HostSetupError::ParseSysctl { .. }), "{err}");
    }

    #[test]
    fn host_facts_from_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("net");
        for (name, flags) in [
            ("eth0", "0x1003\n"),
            ("loop9", "0x9\n"),
            ("docker0", "0x1003"),
        ] {
            std::fs::create_dir_all(net.join(name)).unwrap();
            std::fs::write(net.join(name).join("flags"), flags).unwrap();
        }
        let proc_sys = dir.path().join("sys");
        std::fs::create_dir_all(proc_sys.join("net/ipv6")).unwrap();
        assert_eq!(
            HostFacts::detect(&net, &proc_sys),
            HostFacts {
                loopback: "loop9".into(),
                docker_bridge: Some("docker0".into()),
                ipv6: true
            }
        );
        std::fs::remove_dir_all(net.join("docker0")).unwrap();
        std::fs::remove_dir_all(net.join("loop9")).unwrap();
        assert_eq!(
            HostFacts::detect(&net, &dir.path().join("none")),
            HostFacts {
                loopback: "lo".into(),
                docker_bridge: None,
                ipv6: false
            }
        );
    }

    #[test]
    fn errors_are_clear() {
        assert_eq!(
            HostSetupError::NotRoot(1000).to_string(),
            "must run as root (effective uid is 1000): iptables and /proc/sys need it"
        );
        let several = HostSetupError::Several(vec![
            HostSetupError::MissingTool("ip6tables"),
            HostSetupError::RuleStuck {
                command: "iptables -C".into(),
            },
        ]);
        assert!(several.to_string().contains("; "), "{several}");
    }
}

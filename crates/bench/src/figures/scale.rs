//! Figure 9, ecs-local at scale: its API latency and memory with many
//! tasks and container instances in its store. No agent and no Docker:
//! simulated agents on the ACS websocket ack every payload and report each
//! task RUNNING, so tasks reach the state they would on real hosts.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use super::{ms, step_at, PlaneGuard, Settings};
use crate::procfs::{self, Rss};

/// The scale: 100 instances, 10,000 tasks.
pub const SCALE_INSTANCES: usize = 100;
pub const SCALE_TASKS: usize = 10_000;
/// RunTask's largest count, so the fill takes the fewest calls.
pub const SCALE_FILL_COUNT: usize = 10;
/// RunTask calls in flight at once while the store is filled.
pub const SCALE_FILL_WORKERS: usize = 4;
/// Tasks named in each timed DescribeTasks.
pub const SCALE_DESCRIBE_TASKS: usize = 10;
/// `maxResults` of each timed ListTasks.
pub const SCALE_LIST_MAX: usize = 100;
/// Between two timed calls, so that the payload, ack and state change a
/// timed RunTask sets off are mostly over before the next call.
pub const SCALE_PAUSE: Duration = Duration::from_millis(50);
/// The task's memory: 100 such tasks are a small share of each instance.
const SCALE_TASK_MEMORY_MIB: u64 = 16;
const TARGET: &str = "AmazonEC2ContainerServiceV20141113.";
const FILL_TIMEOUT: Duration = Duration::from_secs(900);

/// The calls timed at scale, in the order of the first round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleCall {
    Describe,
    List,
    Run,
}

pub const SCALE_CALLS: [ScaleCall; 3] = [ScaleCall::Describe, ScaleCall::List, ScaleCall::Run];

#[derive(Debug, Clone, Default)]
pub struct ScaleFigure {
    pub instances: usize,
    /// Tasks in the store once it was filled, and at the end.
    pub tasks_filled: usize,
    pub tasks_at_end: usize,
    /// Registering the instances and connecting their agents.
    pub connect_secs: f64,
    /// From the first fill RunTask to every filled task reported RUNNING.
    pub fill_secs: f64,
    /// ... of which the RunTask calls themselves.
    pub fill_calls_secs: f64,
    /// Each fill RunTask, in the order they were sent, as the store grew.
    pub fill_run_ms: Vec<f64>,
    pub describe_ms: Vec<f64>,
    pub list_ms: Vec<f64>,
    pub run_ms: Vec<f64>,
    pub measure_secs: f64,
    pub after_fill: Option<Rss>,
    pub at_end: Option<Rss>,
    /// ecs-local's CPU seconds (utime + stime) over the fill and over the
    /// timed calls.
    pub cpu_fill_secs: f64,
    pub cpu_measure_secs: f64,
    /// The size of `state.redb` at the end, and the file system it is on
    /// (each store update is a durable transaction: its fsync is part of
    /// every write call's time).
    pub db_bytes: Option<u64>,
    pub data_fs: String,
    pub notes: Vec<String>,
}

impl ScaleFigure {
    pub fn samples(&self, call: ScaleCall) -> &[f64] {
        match call {
            ScaleCall::Describe => &self.describe_ms,
            ScaleCall::List => &self.list_ms,
            ScaleCall::Run => &self.run_ms,
        }
    }

    fn push(&mut self, call: ScaleCall, ms: f64) {
        match call {
            ScaleCall::Describe => self.describe_ms.push(ms),
            ScaleCall::List => self.list_ms.push(ms),
            ScaleCall::Run => self.run_ms.push(ms),
        }
    }

    fn note(&mut self, note: String) {
        eprintln!("note: {note}");
        self.notes.push(note);
    }
}

/// One kept-alive HTTP/1.1 connection to ecs-local for JSON 1.1 calls, as
/// an SDK's pool would hold; no SDK, so a time is ecs-local's and
/// loopback's alone.
struct Http {
    addr: String,
    conn: Option<BufReader<TcpStream>>,
}

impl Http {
    fn new(addr: &str) -> Http {
        Http {
            addr: addr.to_string(),
            conn: None,
        }
    }

    /// The status and body of one call.
    async fn post(&mut self, action: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        let reused = self.conn.is_some();
        match self.exchange(action, body).await {
            Ok(answer) => Ok(answer),
            // A kept-alive connection the server closed fails before the
            // request is read; one more try on a new connection is safe.
            Err(e) if reused && e.downcast_ref::<Unanswered>().is_some() => {
                self.conn = None;
                self.exchange(action, body).await
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }

    async fn exchange(&mut self, action: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        if self.conn.is_none() {
            let stream = TcpStream::connect(&self.addr)
                .await
                .with_context(|| format!("connecting to ecs-local at {}", self.addr))?;
            stream.set_nodelay(true)?;
            self.conn = Some(BufReader::new(stream));
        }
        let conn = self.conn.as_mut().ok_or_else(|| anyhow!("no connection"))?;
        let head = format!(
            "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-amz-json-1.1\r\n\
             X-Amz-Target: {TARGET}{action}\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        conn.get_mut().write_all(&request).await?;
        let mut line = String::new();
        if conn.read_line(&mut line).await? == 0 {
            return Err(Unanswered.into());
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("not an HTTP answer: {line:?}"))?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        loop {
            line.clear();
            if conn.read_line(&mut line).await? == 0 {
                bail!("the connection ended inside an HTTP head");
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let body = if chunked {
            read_chunked(conn).await?
        } else if let Some(n) = length {
            let mut body = vec![0; n];
            conn.read_exact(&mut body).await?;
            body
        } else {
            close = true;
            let mut body = Vec::new();
            conn.read_to_end(&mut body).await?;
            body
        };
        if close {
            self.conn = None;
        }
        Ok((status, body))
    }

    /// A call that must succeed; its body as JSON.
    async fn call(&mut self, action: &str, body: &Value) -> Result<Value> {
        let (status, bytes) = self.post(action, body.to_string().as_bytes()).await?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status != 200 {
            bail!(
                "{action} answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        Ok(value)
    }
}

/// The connection ended before any answer.
#[derive(Debug)]
struct Unanswered;

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the connection ended before an answer")
    }
}

impl std::error::Error for Unanswered {}

async fn read_chunked(conn: &mut BufReader<TcpStream>) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        conn.read_line(&mut line).await?;
        let size_text = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {line:?}"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                line.clear();
                if conn.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size + 2, 0);
        conn.read_exact(&mut body[start..]).await?;
        body.truncate(start + size);
    }
}

/// xorshift64*: random picks of known tasks without a dependency for it.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        Rng(nanos | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1) as u64) as usize
    }
}

/// What the simulated agents saw, shared between them.
#[derive(Default)]
struct Agents {
    /// Tasks reported RUNNING and accepted.
    running: AtomicUsize,
    /// The first few things that went wrong.
    errors: Mutex<Vec<String>>,
}

impl Agents {
    fn error(&self, e: String) {
        let mut errors = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
        if errors.len() < 5 {
            errors.push(e);
        }
    }
}

/// An agent for one instance: acks each payload as the ECS agent does and
/// reports its task RUNNING (STOPPED when that is what it is asked),
/// without a container behind it.
async fn simulated_agent(
    mut ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
    mut http: Http,
    agents: Arc<Agents>,
) {
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        if frame["type"] != "PayloadMessage" {
            continue;
        }
        let m = &frame["message"];
        let ack = json!({"type": "AckRequest", "message": {
            "cluster": m["clusterArn"], "containerInstance": m["containerInstanceArn"],
            "messageId": m["messageId"]}});
        if let Err(e) = ws.send(Message::Text(ack.to_string().into())).await {
            agents.error(format!("an ack could not be sent: {e}"));
            return;
        }
        for task in m["tasks"].as_array().into_iter().flatten() {
            let status = match task["desiredStatus"].as_str() {
                Some("STOPPED") => "STOPPED",
                _ => "RUNNING",
            };
            let body = json!({"cluster": m["clusterArn"], "task": task["arn"],
                "status": status, "reason": ""});
            match http.call("SubmitTaskStateChange", &body).await {
                Ok(_) if status == "RUNNING" => {
                    agents.running.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => agents.error(format!("{e:#}")),
            }
        }
    }
}

fn registration() -> Value {
    json!({
        "cluster": "default",
        "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 1_000_000},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 1_000_000},
            {"name": "PORTS", "type": "STRINGSET", "stringSetValue": []},
            {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []}
        ],
        "attributes": [{"name": "ecs.os-type", "value": "linux"}]
    })
}

fn acs_url(addr: &str, instance_arn: &str) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("clusterArn", "default")
        .append_pair("containerInstanceArn", instance_arn)
        .append_pair("agentHash", "x")
        .append_pair("agentVersion", "1.105.1")
        .append_pair("dockerVersion", "x")
        .append_pair("protocolVersion", "2")
        .append_pair("sendCredentials", "true")
        .append_pair("seqNum", "1")
        .finish();
    format!("ws://{addr}/acs/ws?{query}")
}

fn task_arns(answer: &Value) -> Vec<String> {
    answer["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["taskArn"].as_str().map(str::to_string))
        .collect()
}

/// RunTask of `count`; every task must be placed.
async fn run_task(http: &mut Http, task_definition: &str, count: usize) -> Result<Vec<String>> {
    let answer = http
        .call(
            "RunTask",
            &json!({"cluster": "default", "taskDefinition": task_definition,
                "count": count, "startedBy": "ecs-bench"}),
        )
        .await?;
    let arns = task_arns(&answer);
    if arns.len() != count {
        bail!(
            "RunTask placed {} of {count}: {}",
            arns.len(),
            answer["failures"]
        );
    }
    Ok(arns)
}

/// The file system type of the mount that holds `path`, from
/// `/proc/self/mountinfo` (the longest mount point above it).
fn file_system_of(path: &Path) -> String {
    let Ok(path) = path.canonicalize() else {
        return "unknown".into();
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mount_point = left.split_whitespace().nth(4)?;
            let fs = right.split_whitespace().next()?;
            path.starts_with(mount_point)
                .then(|| (mount_point.len(), fs.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".into(), |(_, fs)| fs)
}

/// Registers the instances, connects an agent to each, fills the store
/// and times the calls; ecs-local is started here, on a data directory of
/// its own under `tmp`, and killed at the end.
pub async fn scale(settings: &Settings, tmp: &Path, started: Instant) -> Result<ScaleFigure> {
    let dir = tmp.join("scale");
    let plane = {
        let dir = dir.clone();
        PlaneGuard(Some(
            tokio::task::spawn_blocking(move || e2e::Plane::start(&dir)).await??,
        ))
    };
    let (pid, addr) = {
        let p = plane.plane()?;
        (p.pid(), format!("127.0.0.1:{}", p.port))
    };
    let mut fig = ScaleFigure {
        instances: SCALE_INSTANCES,
        data_fs: file_system_of(&dir),
        ..ScaleFigure::default()
    };
    let mut http = Http::new(&addr);
    let agents = Arc::new(Agents::default());

    step_at(
        started,
        &format!("scale: {SCALE_INSTANCES} instances, each with a simulated agent"),
    );
    let t0 = Instant::now();
    let mut instance_arns = Vec::new();
    let mut sockets = Vec::new();
    for _ in 0..SCALE_INSTANCES {
        let answer = http
            .call("RegisterContainerInstance", &registration())
            .await?;
        let arn = answer["containerInstance"]["containerInstanceArn"]
            .as_str()
            .ok_or_else(|| anyhow!("no containerInstanceArn in {answer}"))?
            .to_string();
        let (ws, _) = tokio_tungstenite::connect_async(acs_url(&addr, &arn))
            .await
            .context("connecting a simulated agent to ACS")?;
        sockets.push(tokio::spawn(simulated_agent(
            ws,
            Http::new(&addr),
            agents.clone(),
        )));
        instance_arns.push(arn);
    }
    wait_connected(&mut http, &instance_arns).await?;
    fig.connect_secs = t0.elapsed().as_secs_f64();

    let task_definition = http
        .call(
            "RegisterTaskDefinition",
            &json!({"family": "ecs-bench-scale", "containerDefinitions": [{
                "name": "main", "image": e2e::TEST_IMAGE, "essential": true,
                "memory": SCALE_TASK_MEMORY_MIB, "command": super::command()}]}),
        )
        .await?["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .ok_or_else(|| anyhow!("no taskDefinitionArn"))?
        .to_string();

    step_at(
        started,
        &format!(
            "scale: filling the store with {SCALE_TASKS} tasks (RunTask count {SCALE_FILL_COUNT}, \
             {SCALE_FILL_WORKERS} at a time)"
        ),
    );
    let cpu0 = procfs::cpu_seconds(pid)?;
    let t0 = Instant::now();
    let (known, fill_run_ms) = fill(&addr, &task_definition).await?;
    fig.fill_calls_secs = t0.elapsed().as_secs_f64();
    fig.fill_run_ms = fill_run_ms;
    wait_running(&agents, known.len(), FILL_TIMEOUT, started).await?;
    fig.fill_secs = t0.elapsed().as_secs_f64();
    fig.cpu_fill_secs = procfs::cpu_seconds(pid)? - cpu0;
    fig.tasks_filled = known.len();
    tokio::time::sleep(settings.settle).await;
    fig.after_fill = Some(procfs::rss(pid)?);

    let rounds = settings.scale_samples;
    step_at(
        started,
        &format!("scale: DescribeTasks, ListTasks and RunTask, {rounds} of each, taking turns"),
    );
    let mut rng = Rng::seeded();
    let mut extra = 0;
    let cpu0 = procfs::cpu_seconds(pid)?;
    let t0 = Instant::now();
    // One untimed round first, for the connection and the caches.
    for round in 0..=rounds {
        for k in 0..SCALE_CALLS.len() {
            // Each round starts with the next call, so no call always
            // follows the same one.
            let call = SCALE_CALLS[(round + k) % SCALE_CALLS.len()];
            let took = match call {
                ScaleCall::Describe => {
                    let arns: Vec<&String> = (0..SCALE_DESCRIBE_TASKS)
                        .map(|_| &known[rng.below(known.len())])
                        .collect();
                    let body = json!({"cluster": "default", "tasks": arns});
                    let t = Instant::now();
                    let answer = http.call("DescribeTasks", &body).await?;
                    let took = t.elapsed();
                    let found = answer["tasks"].as_array().map_or(0, Vec::len);
                    if found != SCALE_DESCRIBE_TASKS {
                        bail!(
                            "DescribeTasks found {found} of {SCALE_DESCRIBE_TASKS}: {}",
                            answer["failures"]
                        );
                    }
                    took
                }
                ScaleCall::List => {
                    let body = json!({"cluster": "default", "maxResults": SCALE_LIST_MAX});
                    let t = Instant::now();
                    let answer = http.call("ListTasks", &body).await?;
                    let took = t.elapsed();
                    let listed = answer["taskArns"].as_array().map_or(0, Vec::len);
                    if listed != SCALE_LIST_MAX {
                        bail!("ListTasks listed {listed}, not {SCALE_LIST_MAX}");
                    }
                    took
                }
                ScaleCall::Run => {
                    let t = Instant::now();
                    run_task(&mut http, &task_definition, 1).await?;
                    extra += 1;
                    t.elapsed()
                }
            };
            if round > 0 {
                fig.push(call, ms(took));
            }
            tokio::time::sleep(SCALE_PAUSE).await;
        }
    }
    fig.measure_secs = t0.elapsed().as_secs_f64();
    fig.tasks_at_end = known.len() + extra;
    if let Err(e) = wait_running(&agents, fig.tasks_at_end, Duration::from_secs(60), started).await
    {
        fig.note(format!("after the timed calls: {e:#}"));
    }
    fig.cpu_measure_secs = procfs::cpu_seconds(pid)? - cpu0;
    fig.at_end = Some(procfs::rss(pid)?);
    fig.db_bytes = std::fs::metadata(dir.join("state.redb"))
        .ok()
        .map(|m| m.len());
    let errors = std::mem::take(&mut *agents.errors.lock().unwrap_or_else(PoisonError::into_inner));
    for e in errors {
        fig.note(format!("a simulated agent: {e}"));
    }
    for s in &sockets {
        s.abort();
    }
    drop(plane);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(fig)
}

/// Until DescribeContainerInstances shows every agent connected: RunTask
/// places only on those.
async fn wait_connected(http: &mut Http, arns: &[String]) -> Result<()> {
    let start = Instant::now();
    loop {
        let mut connected = 0;
        for chunk in arns.chunks(100) {
            let answer = http
                .call(
                    "DescribeContainerInstances",
                    &json!({"cluster": "default", "containerInstances": chunk}),
                )
                .await?;
            connected += answer["containerInstances"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|i| i["agentConnected"] == true)
                .count();
        }
        if connected == arns.len() {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("{connected} of {} simulated agents connected", arns.len());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// [`SCALE_TASKS`] tasks placed by RunTask calls of [`SCALE_FILL_COUNT`],
/// [`SCALE_FILL_WORKERS`] at a time; their ARNs and each call's time, in
/// the order the calls were sent.
async fn fill(addr: &str, task_definition: &str) -> Result<(Vec<String>, Vec<f64>)> {
    let calls = SCALE_TASKS.div_ceil(SCALE_FILL_COUNT);
    let next = Arc::new(AtomicUsize::new(0));
    let workers = (0..SCALE_FILL_WORKERS).map(|_| {
        let (next, addr, td) = (next.clone(), addr.to_string(), task_definition.to_string());
        async move {
            let mut http = Http::new(&addr);
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= calls {
                    break;
                }
                let t = Instant::now();
                let arns = run_task(&mut http, &td, SCALE_FILL_COUNT).await?;
                done.push((i, ms(t.elapsed()), arns));
            }
            anyhow::Ok(done)
        }
    });
    let mut all = Vec::new();
    for r in futures_util::future::join_all(workers).await {
        all.extend(r?);
    }
    all.sort_by_key(|(i, _, _)| *i);
    let times = all.iter().map(|(_, t, _)| *t).collect();
    let arns = all.into_iter().flat_map(|(_, _, a)| a).collect();
    Ok((arns, times))
}

/// Until the agents have reported `wanted` tasks RUNNING in all.
async fn wait_running(
    agents: &Agents,
    wanted: usize,
    timeout: Duration,
    started: Instant,
) -> Result<()> {
    let start = Instant::now();
    let mut told = Instant::now();
    loop {
        let running = agents.running.load(Ordering::Relaxed);
        if running >= wanted {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("{running} of {wanted} tasks reported RUNNING after {timeout:?}");
        }
        if told.elapsed() > Duration::from_secs(15) {
            step_at(
                started,
                &format!("scale: {running} of {wanted} tasks reported RUNNING"),
            );
            told = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn picks_stay_in_range() {
        let mut rng = Rng::seeded();
        let picks: Vec<usize> = (0..1000).map(|_| rng.below(7)).collect();
        assert!(picks.iter().all(|p| *p < 7));
        assert!((0..7).all(|v| picks.contains(&v)));
        assert_eq!(rng.below(0), 0);
    }

    #[test]
    fn the_acs_query_is_encoded() {
        let url = acs_url(
            "127.0.0.1:1",
            "arn:aws:ecs:us-east-1:0:container-instance/default/ab",
        );
        assert!(url.starts_with("ws://127.0.0.1:1/acs/ws?clusterArn=default&"));
        assert!(url.contains(
            "containerInstanceArn=arn%3Aaws%3Aecs%3Aus-east-1%3A0%3Acontainer-instance%2Fdefault%2Fab"
        ));
    }
}

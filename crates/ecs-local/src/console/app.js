// ecs-local console (docs/ecs-local.md §1.9). Reads /console/api/state every
// two seconds and draws it; everything from the plane is put in the page as
// text, never as markup.
"use strict";

const POLL_MS = 2000;
const VIEWS = ["clusters", "instances", "tasks", "services"];

const ui = {
  session: null,
  data: null,
  cluster: null,
  // Desired counts being typed, by service ARN, kept across redraws.
  drafts: new Map(),
  polling: false,
  message: "",
  // The read-only caller asked for the sign-in form.
  wantSignIn: false,
  token: "",
};

// ---- SHA-256 and HMAC (FIPS 180-4, RFC 2104), for signing in where the
// page has no Web Crypto (plain HTTP beyond loopback). ----

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

function rotr(x, n) {
  return (x >>> n) | (x << (32 - n));
}

function sha256(bytes) {
  const bitLength = bytes.length * 8;
  // The message, a 1 bit, zeros, and the 64-bit length: a multiple of 64 bytes.
  const padded = new Uint8Array(Math.ceil((bytes.length + 9) / 64) * 64);
  padded.set(bytes);
  padded[bytes.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(bitLength / 0x100000000));
  view.setUint32(padded.length - 4, bitLength >>> 0);
  const h = new Uint32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  const w = new Uint32Array(64);
  for (let block = 0; block < padded.length; block += 64) {
    for (let t = 0; t < 16; t++) w[t] = view.getUint32(block + t * 4);
    for (let t = 16; t < 64; t++) {
      const s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >>> 3);
      const s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >>> 10);
      w[t] = (w[t - 16] + s0 + w[t - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, k] = h;
    for (let t = 0; t < 64; t++) {
      const t1 = (k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      k = g; g = f; f = e; e = (d + t1) >>> 0;
      d = c; c = b; b = a; a = (t1 + t2) >>> 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d;
    h[4] += e; h[5] += f; h[6] += g; h[7] += k;
  }
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  h.forEach((word, i) => outView.setUint32(i * 4, word));
  return out;
}

function hmacSha256(key, message) {
  let block = new Uint8Array(64);
  block.set(key.length > 64 ? sha256(key) : key);
  const inner = new Uint8Array(64 + message.length);
  const outer = new Uint8Array(64 + 32);
  for (let i = 0; i < 64; i++) {
    inner[i] = block[i] ^ 0x36;
    outer[i] = block[i] ^ 0x5c;
  }
  inner.set(message, 64);
  outer.set(sha256(inner), 64);
  return sha256(outer);
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function utf8(text) {
  return new TextEncoder().encode(text);
}

// ---- Talking to the plane. ----

// The session token lives in this tab's sessionStorage, which belongs to
// the plane's origin (scheme, host and port) alone, and goes out in a
// header; a cookie would also go to every other port of the host.
const TOKEN_KEY = "ecs-local-console-token";

function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch (e) {
    return "";
  }
}

function setToken(value) {
  try {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch (e) {
    // Storage refused: the session lasts as long as this page.
  }
  ui.token = value || "";
}

async function api(path, body) {
  const options = {
    credentials: "omit",
    cache: "no-store",
    headers: { "X-Ecs-Local-Console": ui.token || token() || "page" },
  };
  if (body !== undefined) {
    options.method = "POST";
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (e) {
    return { ok: false, status: 0, body: { message: "The plane did not answer: " + e.message } };
  }
  let json = null;
  try {
    json = await response.json();
  } catch (e) {
    json = null;
  }
  return { ok: response.ok, status: response.status, body: json || {} };
}

async function loadSession() {
  const answer = await api("/console/api/session");
  if (answer.ok) ui.session = answer.body;
  drawChrome();
}

async function refresh() {
  if (ui.polling) return;
  ui.polling = true;
  try {
    if (!ui.session) await loadSession();
    if (!ui.session || !ui.session.canRead) {
      drawChrome();
      return;
    }
    const asked = ui.cluster;
    const query = asked ? "?cluster=" + encodeURIComponent(asked) : "";
    const answer = await api("/console/api/state" + query);
    if (answer.status === 401) {
      await loadSession();
      return;
    }
    // Another cluster was picked while this answer was on its way.
    if (ui.cluster !== asked) return;
    if (!answer.ok) {
      setStatus(answer.body.message || "Could not read the state (HTTP " + answer.status + ").");
      return;
    }
    ui.data = answer.body;
    ui.cluster = answer.body.cluster;
    setStatus(ui.message || "Updated " + new Date().toLocaleTimeString() + ".");
    drawChrome();
    // A redraw would take the cursor out of a field being typed in.
    const focused = document.activeElement;
    if (!(focused && focused.closest && focused.closest("#view") && focused.tagName === "INPUT")) {
      drawView();
    }
  } finally {
    ui.polling = false;
  }
}

async function signIn(event) {
  event.preventDefault();
  const error = document.getElementById("signin-error");
  error.textContent = "";
  const id = document.getElementById("access-key-id").value.trim();
  const secretField = document.getElementById("secret-access-key");
  // A fresh challenge for each try: each one is good once.
  await loadSession();
  const nonce = ui.session && ui.session.nonce;
  if (!nonce) {
    error.textContent = "The plane gave no sign-in challenge.";
    return;
  }
  const signature = hex(hmacSha256(utf8(secretField.value), utf8("ecs-local console login\n" + nonce)));
  const answer = await api("/console/api/login", { accessKeyId: id, nonce: nonce, signature: signature });
  if (!answer.ok) {
    error.textContent = answer.body.message || "Sign-in failed (HTTP " + answer.status + ").";
    return;
  }
  secretField.value = "";
  setToken(answer.body.token);
  ui.wantSignIn = false;
  ui.session = null;
  await loadSession();
  await refresh();
}

async function signOut() {
  await api("/console/api/logout", {});
  setToken("");
  ui.session = null;
  ui.data = null;
  await loadSession();
  await refresh();
}

async function act(path, body, done) {
  const answer = await api(path, body);
  ui.message = answer.ok ? done : (answer.body.message || "Refused (HTTP " + answer.status + ").");
  setStatus(ui.message);
  if (answer.status === 403) {
    // The session ended (expired, signed out elsewhere, plane restarted).
    ui.session = null;
    await loadSession();
  }
  await refresh();
  ui.message = "";
}

// ---- Drawing. ----

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function badge(text, kind) {
  return el("span", { class: "badge " + (kind || text) }, text);
}

function shortId(arn) {
  return arn ? String(arn).split("/").pop() : "";
}

function when(seconds) {
  if (seconds === undefined || seconds === null) return "";
  const date = new Date(Number(seconds) * 1000);
  return isNaN(date) ? "" : date.toLocaleString();
}

function details(pairs) {
  const list = el("dl");
  for (const [term, value] of pairs) {
    if (value === undefined || value === null || value === "") continue;
    list.append(el("dt", {}, term), el("dd", {}, value));
  }
  return list;
}

function setStatus(text) {
  document.getElementById("status").textContent = text;
}

function currentView() {
  const name = location.hash.replace(/^#/, "");
  return VIEWS.includes(name) ? name : "tasks";
}

function drawChrome() {
  const session = ui.session || {};
  const showSignIn = Boolean(session.requireAuth && !session.canAct && (!session.canRead || ui.wantSignIn));
  document.getElementById("signin").hidden = !showSignIn;
  document.getElementById("views").hidden = !session.canRead;
  document.getElementById("cluster-picker").hidden = !session.canRead || !ui.data;
  document.getElementById("signout").hidden = !(session.canAct && session.requireAuth);
  const who = document.getElementById("who");
  who.replaceChildren();
  if (session.canAct) {
    who.textContent = "Operator: " + session.operator;
  } else if (session.canRead) {
    who.textContent = "Read-only";
    if (session.requireAuth && !showSignIn) {
      who.append(" · ", el("a", {
        href: "#", id: "show-signin",
        onclick: (e) => { e.preventDefault(); ui.wantSignIn = true; drawChrome(); },
      }, "sign in to act"));
    }
  }
  if (!session.canRead) {
    document.getElementById("view").replaceChildren();
    setStatus(session.requireAuth ? "This plane requires signing in." : "");
  }
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("current", link.dataset.view === currentView());
  }
  const select = document.getElementById("cluster");
  if (ui.data) {
    const names = ui.data.clusters.map((c) => c.clusterName);
    if (select.options.length !== names.length || names.some((n, i) => select.options[i].value !== n)) {
      select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    }
    select.value = ui.data.cluster || "";
  }
}

function drawView() {
  const view = document.getElementById("view");
  if (!ui.data) return;
  const draw = { clusters: drawClusters, instances: drawInstances, tasks: drawTasks, services: drawServices }[currentView()];
  view.replaceChildren(draw(ui.data));
}

function empty(text) {
  return el("p", { class: "muted" }, text);
}

function drawClusters(data) {
  if (!data.clusters.length) return empty("No clusters.");
  return el("div", { class: "cards" }, data.clusters.map((c) =>
    el("article", { class: "card", "data-cluster": c.clusterName },
      el("h3", {}, el("a", { href: "#tasks", onclick: () => { ui.cluster = c.clusterName; } }, c.clusterName), badge(c.status)),
      details([
        ["Instances", c.registeredContainerInstancesCount],
        ["Running tasks", c.runningTasksCount],
        ["Pending tasks", c.pendingTasksCount],
        ["Services", c.activeServicesCount],
      ]))));
}

function resource(list, name) {
  const found = (list || []).find((r) => r.name === name);
  return found ? Number(found.integerValue || 0) : undefined;
}

function meter(registered, remaining, unit) {
  if (registered === undefined) return "";
  const used = registered - (remaining || 0);
  const percent = registered > 0 ? Math.round((used / registered) * 100) : 0;
  // Through the CSSOM: the page's policy allows no inline style attributes.
  const bar = el("span");
  bar.style.width = percent + "%";
  return el("div", {},
    `${used} of ${registered} ${unit} in use (${remaining} left)`,
    el("div", { class: "meter" }, bar));
}

function drawInstances(data) {
  if (!data.containerInstances.length) return empty("No container instances in this cluster.");
  return el("div", { class: "cards" }, data.containerInstances.map((ci) => {
    const version = ci.versionInfo || {};
    return el("article", { class: "card", "data-instance-arn": ci.containerInstanceArn },
      el("h3", {}, shortId(ci.containerInstanceArn), badge(ci.status),
        ci.agentConnected ? badge("connected") : badge("disconnected")),
      details([
        ["EC2 ID", ci.ec2InstanceId],
        ["Agent", [version.agentVersion, version.agentHash].filter(Boolean).join(" ")],
        ["Docker", version.dockerVersion],
        ["CPU", meter(resource(ci.registeredResources, "CPU"), resource(ci.remainingResources, "CPU"), "units")],
        ["Memory", meter(resource(ci.registeredResources, "MEMORY"), resource(ci.remainingResources, "MEMORY"), "MiB")],
        ["Tasks", `${ci.runningTasksCount || 0} running, ${ci.pendingTasksCount || 0} pending`],
        ["Registered", when(ci.registeredAt)],
      ]),
      el("details", {}, el("summary", {}, `Attributes (${(ci.attributes || []).length})`),
        el("div", { class: "scroll" }, el("table", {},
          el("tr", {}, el("th", {}, "Name"), el("th", {}, "Value")),
          (ci.attributes || []).map((a) => el("tr", {}, el("td", {}, a.name), el("td", {}, a.value || "")))))));
  }));
}

function ports(container) {
  return (container.networkBindings || [])
    .map((b) => `${b.hostPort}→${b.containerPort}/${b.protocol || "tcp"}`)
    .join(", ");
}

function drawTasks(data) {
  if (!data.tasks.length) return empty("No tasks in this cluster.");
  const canAct = ui.session && ui.session.canAct;
  const shown = data.taskCount > data.tasks.length
    ? el("p", { class: "muted", id: "tasks-shown" }, `Showing the newest ${data.tasks.length} of ${data.taskCount} tasks.`)
    : null;
  return el("div", {}, shown, el("div", { class: "cards" }, data.tasks.map((t) => {
    const stop = canAct && t.desiredStatus !== "STOPPED"
      ? el("button", {
        type: "button", class: "danger", "data-action": "stop-task", "data-task-arn": t.taskArn,
        onclick: (e) => {
          e.target.disabled = true;
          act("/console/api/stop-task", { cluster: data.cluster, task: t.taskArn }, `Stopping ${shortId(t.taskArn)}.`);
        },
      }, "Stop task")
      : null;
    return el("article", { class: "card task", "data-task-arn": t.taskArn, "data-last-status": t.lastStatus },
      el("h3", {}, shortId(t.taskArn), badge(t.lastStatus), t.healthStatus && t.healthStatus !== "UNKNOWN" ? badge(t.healthStatus) : null),
      details([
        ["Task definition", shortId(t.taskDefinitionArn)],
        ["Desired", t.desiredStatus],
        ["Started by", t.startedBy],
        ["Instance", shortId(t.containerInstanceArn)],
        ["Created", when(t.createdAt)],
        ["Started", when(t.startedAt)],
        ["Stopped", when(t.stoppedAt)],
        ["Stop code", t.stopCode],
        ["Stopped reason", t.stoppedReason],
      ]),
      el("ul", { class: "rows" }, (t.containers || []).map((c) => {
        const exit = c.exitCode === undefined || c.exitCode === null ? null : String(c.exitCode);
        const facts = [
          exit === null ? null : el("span", {}, "exit ", el("span", { class: "exit" }, exit)),
          c.reason ? el("span", {}, c.reason) : null,
          ports(c) ? el("span", {}, "ports " + ports(c)) : null,
        ].filter(Boolean);
        return el("li", { "data-container": c.name },
          el("div", {}, el("strong", {}, c.name), " ", badge(c.lastStatus || ""),
            c.healthStatus && c.healthStatus !== "UNKNOWN" ? badge(c.healthStatus) : null),
          facts.length ? el("div", { class: "facts" }, facts) : null);
      })),
      stop ? el("div", { class: "actions" }, stop) : null);
  })));
}

function drawServices(data) {
  if (!data.services.length) return empty("No services in this cluster.");
  const canAct = ui.session && ui.session.canAct;
  return el("div", { class: "cards" }, data.services.map((s) => {
    let form = null;
    if (canAct && s.status === "ACTIVE") {
      const input = el("input", {
        type: "number", min: 0, step: 1, "data-service": s.serviceName, "aria-label": "Desired count",
        value: ui.drafts.has(s.serviceArn) ? ui.drafts.get(s.serviceArn) : s.desiredCount,
        oninput: (e) => ui.drafts.set(s.serviceArn, e.target.value),
      });
      form = el("div", { class: "actions" },
        el("label", {}, "Desired count ", input),
        el("button", {
          type: "button", "data-action": "desired-count", "data-service": s.serviceName,
          onclick: () => {
            const text = String(input.value).trim();
            const count = Number(text);
            if (text === "" || !Number.isInteger(count) || count < 0) {
              setStatus("The desired count must be a whole number, 0 or more.");
              return;
            }
            ui.drafts.delete(s.serviceArn);
            input.blur();
            act("/console/api/desired-count", { cluster: data.cluster, service: s.serviceName, desiredCount: count },
              `Desired count of ${s.serviceName} set to ${count}.`);
          },
        }, "Update"));
    }
    return el("article", { class: "card service", "data-service": s.serviceName },
      el("h3", {}, s.serviceName, badge(s.status)),
      details([
        ["Tasks", `${s.runningCount || 0} running, ${s.pendingCount || 0} pending, ${s.desiredCount || 0} desired`],
        ["Task definition", shortId(s.taskDefinition)],
        ["Scheduling", s.schedulingStrategy],
        ["Created", when(s.createdAt)],
      ]),
      el("ul", { class: "rows" }, (s.deployments || []).map((d) => el("li", {},
        el("div", {}, badge(d.status), " ", d.rolloutState ? badge(d.rolloutState) : null, " ", shortId(d.taskDefinition)),
        el("div", { class: "facts" },
          el("span", {}, `${d.runningCount || 0} of ${d.desiredCount || 0} running`),
          el("span", {}, `${d.pendingCount || 0} pending`),
          el("span", {}, `${d.failedTasks || 0} failed`),
          el("span", { class: "muted" }, shortId(d.id)))))),
      el("details", { open: true }, el("summary", {}, "Recent events"),
        el("ul", { class: "events" }, (s.events || []).map((ev) =>
          el("li", {}, el("time", {}, when(ev.createdAt)), ev.message)))),
      form);
  }));
}

// ---- Start. ----

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("signin").addEventListener("submit", signIn);
  document.getElementById("signout").addEventListener("click", signOut);
  document.getElementById("cluster").addEventListener("change", (e) => {
    ui.cluster = e.target.value;
    ui.data = null;
    refresh();
  });
  window.addEventListener("hashchange", () => {
    drawChrome();
    drawView();
  });
  refresh();
  setInterval(refresh, POLL_MS);
});

// For the console's tests (docs/ecs-local.md §1.9).
window.ecsLocalConsole = { sha256, hmacSha256, hex, utf8 };

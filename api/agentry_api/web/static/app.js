// Agentry dashboard. The page is updated only from the event stream (/api/events): a `snapshot`
// first, then `report` events. Buttons send commands (the API answers 202) and show a toast; what
// changed arrives as a report. EventSource reconnects by itself and sends Last-Event-ID, so the
// server replays what was missed.
"use strict";

const state = { agents: new Map(), executions: new Map(), approvals: new Map(), lastId: null };
const page = document.body.dataset.page;

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v; else if (k.startsWith("data-")) el.setAttribute(k, v); else el[k] = v;
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}
const $ = (sel) => document.querySelector(sel);
const tokens = (u) => (u ? (u.inputTokens || 0) + (u.outputTokens || 0) : 0);
const when = (t) => (t ? t.replace("T", " ").replace(/\.\d+Z$/, "Z") : "—");

function toast(text, bad) {
  const el = $("#toast");
  el.textContent = text;
  el.className = bad ? "bad" : "";
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (el.hidden = true), 5000);
}

// `make dev` prints the dashboard's address with `#token=<API token>`. The fragment never reaches a
// server (nor its logs): it signs this browser in as the token's owner (who owns the sample agents)
// and is dropped from the address bar at once.
const handoff = /^#token=([A-Za-z0-9_-]+)$/.exec(location.hash);
if (handoff) {
  history.replaceState(null, "", location.pathname + location.search);
  fetch("/api/session/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ token: handoff[1] }),
  }).then((r) => (r.ok ? location.reload() : toast("this sign-in link is no longer valid", true)));
}

async function command(method, url, body, expect) {
  const init = { method, headers: { "Content-Type": "application/json" }, credentials: "same-origin" };
  if (body !== undefined) init.body = JSON.stringify(body);
  let res;
  try { res = await fetch(url, init); } catch (err) { toast("The server cannot be reached: " + err, true); return null; }
  let data = null;
  try { data = await res.json(); } catch (_) { /* 204 */ }
  if (!expect.includes(res.status)) {
    const detail = data && data.detail;
    toast(Array.isArray(detail) ? detail.map((d) => `${d.loc.slice(1).join(".")}: ${d.msg}`).join("; ") : String(detail || res.statusText), true);
    return { ok: false, status: res.status, data };
  }
  return { ok: true, status: res.status, data };
}

// -- rendering from state -------------------------------------------------------------------------
function pill(text, kind) { return h("span", { class: `pill ${kind || ""}` }, text); }

function renderAgents() {
  const body = $("#agents tbody");
  if (!body) return;
  const rows = [...state.agents.values()].sort((a, b) => (a.createdAt < b.createdAt ? -1 : 1));
  body.replaceChildren(...(rows.length ? rows.map((a) => h("tr", { "data-agent-id": a.id },
    h("td", {}, h("a", { href: `/agents/${encodeURIComponent(a.id)}` }, a.name)),
    h("td", {}, pill(a.status.ready || "Unknown", `ready-${a.status.ready}`), " ", a.status.reason || ""),
    h("td", {}, pill(a.sync.state, `sync-${a.sync.state}`)),
    h("td", {}, (a.spec.schedule && a.spec.schedule.cron) || "—"),
    h("td", {}, when(a.status.nextRunTime)),
    h("td", {}, a.status.lastExecution ? `${a.status.lastExecution.phase || ""}` : "—"),
    h("td", {}, h("button", { "data-action": "run", "data-id": a.id, class: "small" }, "Run")),
  )) : [h("tr", { class: "empty" }, h("td", { colSpan: 7 }, "No agents yet. ", h("a", { href: "/agents/new" }, "Create one"), " with the form or the chat designer."))]));
}

function renderExecutions() {
  const table = $("#executions");
  if (!table) return;
  const agent = table.dataset.agent;
  const rows = [...state.executions.values()].filter((e) => !agent || e.agentId === agent)
    .sort((a, b) => (a.createdAt < b.createdAt ? 1 : -1));
  const withAgent = !agent;
  table.querySelector("tbody").replaceChildren(...(rows.length ? rows.map((e) => h("tr", { "data-execution": e.id },
    h("td", {}, h("a", { href: `/executions/${encodeURIComponent(e.id)}` }, e.id)),
    withAgent ? h("td", {}, e.trial ? `${e.agentId} (chat trial)` : e.agentId) : null,
    h("td", {}, pill(e.phase, `phase-${e.phase}`)),
    h("td", {}, e.reason || ""),
    h("td", {}, e.trigger),
    h("td", {}, tokens(e.usage) || "—"),
    h("td", {}, e.usage ? `$${e.usage.costUSD}` : "—"),
    h("td", {}, when(e.createdAt)),
  )) : [h("tr", { class: "empty" }, h("td", { colSpan: withAgent ? 8 : 7 }, "No executions yet. Run an agent to see it here, live."))]));
}

function renderApprovals() {
  const pending = [...state.approvals.values()].filter((a) => a.state === "pending");
  const badge = $("#approval-count");
  badge.textContent = pending.length;
  badge.hidden = pending.length === 0;
  const body = $("#approvals tbody");
  if (!body) return;
  body.replaceChildren(...(pending.length ? pending.map((a) => h("tr", { "data-approval": a.id },
    h("td", {}, h("a", { href: `/executions/${encodeURIComponent(a.execution)}` }, a.execution)),
    h("td", {}, a.tool || ""), h("td", {}, pill(a.risk || "", "risk")), h("td", {}, a.summary || ""),
    h("td", {}, when(a.expiresAt)),
    h("td", {}, h("button", { "data-action": "approve", "data-id": a.id, class: "small primary" }, "Approve"), " ",
      h("button", { "data-action": "deny", "data-id": a.id, class: "small danger" }, "Deny")),
  )) : [h("tr", { class: "empty" }, h("td", { colSpan: 6 }, "Nothing waits for a decision."))]));
}

function renderAgentDetail(agent) {
  if (page !== "agent" || document.body.dataset.agentId !== agent.id) return;
  $("#agent-ready").textContent = agent.status.ready || "Unknown";
  $("#agent-reason").textContent = agent.status.reason || "";
  $("#agent-message").textContent = agent.status.message || "";
  $("#agent-sync").textContent = agent.sync.state;
  $("#agent-sync").className = `pill sync-${agent.sync.state}`;
  $("#agent-sync-message").textContent = agent.sync.message || "";
  $("#agent-next").textContent = agent.status.nextRunTime || "—";
  $("#agent-model").textContent = agent.status.model || "—";
  $("#agent-model-source").textContent = agent.spec.model ? "" : "(installation default)";
}

function renderExecutionDetail(e) {
  if (page !== "execution" || document.body.dataset.execution !== e.id) return;
  $("#phase").textContent = e.phase;
  $("#phase").className = `pill phase-${e.phase}`;
  $("#cancel").hidden = FINISHED.includes(e.phase);
  calls.follow(e.phase);
  $("#reason").textContent = e.reason || "";
  $("#message").textContent = e.message || "";
  $("#start").textContent = e.startTime || "—";
  $("#duration").textContent = e.duration || "—";
  if (e.correlationId) $("#correlation").textContent = e.correlationId;
  if (e.usage) {
    $("#tokens").textContent = tokens(e.usage);
    $("#cost").textContent = e.usage.costUSD;
    $("#model").textContent = e.usage.model || "—";
    $("#cache-read").textContent = e.usage.cacheReadTokens || 0;
    $("#cache-write").textContent = e.usage.cacheWriteTokens || 0;
    $("#saving").textContent = e.usage.savingUSD !== undefined ? `$${e.usage.savingUSD}` : "—";
  }
  if (e.result && e.result.summary) $("#result").textContent = e.result.summary;
  replyState(e);
  const box = $("#approval");
  if (e.phase === "WaitingApproval" && e.approval) {
    $("#approval-tool").textContent = e.approval.tool || "";
    $("#approval-risk").textContent = e.approval.risk || "";
    $("#approval-summary").textContent = e.approval.summary || "";
    $("#approval-input").textContent = e.approval.input || "";
    $("#approval-truncated").textContent = e.approval.inputTruncated || "";
    $("#approval-expires").textContent = e.approval.expiresAt || "—";
    $("#approve").dataset.id = $("#deny").dataset.id = e.approval.id;
    box.hidden = false;
  } else {
    box.hidden = true;
  }
}

// The message box: a live run is steered when it can be (steering.js says), a finished run with a
// checkpoint journal is continued (the texts are the page's).
function replyState(e) {
  const form = $("#reply-form");
  if (!form) return;
  const live = !FINISHED.includes(e.phase);
  let why = "";
  if (live && form.dataset.steerable === "false") why = form.dataset.liveWhy.replace("{phase}", e.phase);
  else if (!live && !(e.checkpoint && e.checkpoint.entries > 0)) why = form.dataset.journalWhy;
  $("#reply-message").disabled = $("#reply-send").disabled = Boolean(why);
  $("#reply-send").textContent = live ? "Send" : "Reply";
  $("#reply-interrupt").hidden = !live;
  $("#reply-interrupt").disabled = Boolean(why);
  $("#reply-why").textContent = why;
}

// The thread: a report about one of its runs updates that row; a run continuing one of them joins it.
function threadRow(e) {
  const table = $("#thread-runs");
  if (!table || !e.id) return;
  const rows = table.tBodies[0];
  let row = rows.querySelector(`tr[data-run="${CSS.escape(e.id)}"]`);
  if (!row) {
    if (!e.parent || !rows.querySelector(`tr[data-run="${CSS.escape(e.parent)}"]`)) return;
    const note = e.parent === document.body.dataset.execution ? null : h("span", { class: "muted" }, ` (continues ${e.parent})`);
    row = h("tr", { "data-run": e.id, "data-relation": "continuation" },
      h("td", {}, h("a", { href: `/executions/${encodeURIComponent(e.id)}` }, e.id), note),
      h("td", {}, pill(e.phase, `phase-${e.phase}`)), h("td", { class: "tokens" }, "0"),
      h("td", { class: "cost" }, "$0"), h("td", {}, when(e.createdAt)));
    rows.append(row);
    $("#thread").hidden = false;
  }
  row.cells[1].replaceChildren(pill(e.phase, `phase-${e.phase}`));
  if (e.usage) {
    row.cells[2].textContent = tokens(e.usage);
    row.cells[3].textContent = `$${e.usage.costUSD || "0"}`;
  }
}

// A run's LLM calls are metered by the gateway, not reported on the event stream: the server-rendered
// table is re-read every few seconds while the run is not over, and once more when it ends (its last
// calls settle around its last report).
const FINISHED = ["Succeeded", "Failed", "Cancelled", "Skipped"];
const calls = {
  timer: null,
  async refresh() {
    const box = $("#llm-calls");
    try {
      const r = await fetch(`/executions/${encodeURIComponent(document.body.dataset.execution)}/calls`, { cache: "no-store" });
      if (r.ok) box.innerHTML = await r.text();  // rendered (and escaped) by the server's template
    } catch (_) { /* the next tick tries again */ }
  },
  follow(phase) {
    const box = $("#llm-calls");
    if (!box) return;
    const active = !FINISHED.includes(phase);
    if (active && !this.timer) {
      this.timer = setInterval(() => this.refresh(), 1000 * Number(box.dataset.refreshSeconds || 5));
    } else if (!active && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
      this.refresh();
    }
  },
};

function logLine(report) {
  const log = $("#event-log");
  if (!log || report.execution !== document.body.dataset.execution) return;
  const last = log.lastElementChild;
  if (last && Number(last.dataset.seq) >= report.seq) return;  // already rendered by the server
  const what = report.kind === "approval"
    ? `approval ${report.action}: ${report.tool || ""} ${report.state || ""}${report.decidedBy ? " by " + report.decidedBy : ""}`
    : `${report.action} → ${report.phase}${report.reason ? " (" + report.reason + ")" : ""}${report.message ? ": " + report.message : ""}`;
  log.append(h("li", { "data-seq": report.seq }, h("time", {}, when(report.eventTime)), " ", what));
  if (report.kind === "approval" && report.action === "decided") {
    $("#decisions").append(h("li", {}, `${report.tool || ""}: `, h("strong", {}, report.state), ` by ${report.decidedBy} at ${report.decidedAt}`, report.reason ? ` — ${report.reason}` : ""));
  }
}

function renderAll() { renderAgents(); renderExecutions(); renderApprovals(); }

// -- the event stream ----------------------------------------------------------------------------
function apply(report) {
  if (report.kind === "agent") {
    if (report.action === "deleted") state.agents.delete(report.agent.id);
    else { state.agents.set(report.agent.id, report.agent); renderAgentDetail(report.agent); }
  } else if (report.kind === "execution") {
    const prev = state.executions.get(report.execution) || {};
    const e = { ...prev, ...report, id: report.execution };
    state.executions.set(e.id, e);
    renderExecutionDetail(e);
    if (page === "execution") threadRow(e);
  } else if (report.kind === "approval") {
    state.approvals.set(report.id, report);
  }
  logLine(report);
}

// EventSource reconnects by itself only after a dropped connection. An answer that is not a stream
// (503 past the API's request deadline, 429 past the streams quota) closes it for good, so the page
// would silently stop updating: open a new one after a pause, from the last event seen.
let reconnectMs = 2000;
// The page's stream across reconnections: each EventSource's snapshot and report events are passed on
// here, so listeners of other scripts (workflows.js) outlive the EventSource they started with.
const stream = new EventTarget();
window.agentryStream = stream;

function forward(source, type) {
  source.addEventListener(type, (ev) => {
    stream.dispatchEvent(new MessageEvent(type, { data: ev.data, lastEventId: ev.lastEventId }));
  });
}

function connect() {
  const live = $("#live");
  const from = state.lastId ? `?cursor=${encodeURIComponent(state.lastId)}` : "";
  const source = new EventSource("/api/events" + from);
  source.addEventListener("open", () => {
    live.textContent = "live"; live.className = "live on"; reconnectMs = 2000;
  });
  source.addEventListener("error", () => {
    live.textContent = "reconnecting…"; live.className = "live off";
    if (source.readyState === EventSource.CLOSED) {
      setTimeout(connect, reconnectMs);
      reconnectMs = Math.min(reconnectMs * 2, 30000);
    }
  });
  source.addEventListener("end", () => {
    // The credential ended (signed out, revoked, deleted): a new stream would be refused as well.
    source.close();
    live.textContent = "signed out"; live.className = "live off";
  });
  source.addEventListener("snapshot", (ev) => {
    const snap = JSON.parse(ev.data);
    state.agents = new Map(snap.agents.map((a) => [a.id, a]));
    state.executions = new Map(snap.executions.map((e) => [e.id, e]));
    state.approvals = new Map(snap.approvals.map((a) => [a.id, a]));
    state.lastId = ev.lastEventId;
    renderAll();
    for (const e of state.executions.values()) {
      renderExecutionDetail(e);
      if (page === "execution") threadRow(e);
    }
    document.body.dataset.live = "snapshot";
  });
  source.addEventListener("report", (ev) => {
    state.lastId = ev.lastEventId;
    apply(JSON.parse(ev.data));
    renderAll();
    document.body.dataset.lastEventId = ev.lastEventId;
  });
  forward(source, "snapshot");
  forward(source, "report");
}

// -- commands ------------------------------------------------------------------------------------
document.addEventListener("click", async (ev) => {
  const btn = ev.target.closest("button[data-action]");
  if (!btn) return;
  const id = btn.dataset.id;
  const action = btn.dataset.action;
  if (action === "run") {
    const r = await command("POST", `/api/agents/${encodeURIComponent(id)}/runs`, {}, [202]);
    if (r && r.ok) toast(`Run ${r.data.execution} accepted (correlation ${r.data.correlationId.slice(0, 8)})`);
  } else if (action === "cancel") {
    const r = await command("POST", `/api/executions/${encodeURIComponent(id)}/cancel`, undefined, [202]);
    if (r && r.ok) toast("Cancel requested");
  } else if (action === "approve" || action === "deny") {
    const reasonBox = $("#approval-reason");
    const body = { approved: action === "approve", reason: (reasonBox && reasonBox.value) || null };
    const r = await command("POST", `/api/approvals/${encodeURIComponent(id)}/decision`, body, [202]);
    if (r && r.ok) toast(action === "approve" ? "Approved; the run resumes" : "Denied; the run is cancelled");
  } else if (action === "delete-agent") {
    if (!confirm("Delete this agent and its schedule?")) return;
    const r = await command("DELETE", `/api/agents/${encodeURIComponent(id)}`, undefined, [204]);
    if (r && r.ok) location.href = "/";
  } else if (action === "revoke-token") {
    const r = await command("DELETE", `/api/tokens/${encodeURIComponent(id)}`, undefined, [204]);
    if (r && r.ok) location.reload();
  }
});

// The form's fields over the agent's current spec: saving keeps what the form does not show
// (secrets, MCP servers, resources, ...), and a field emptied here is removed.
function formSpec(form) {
  const f = new FormData(form);
  const base = JSON.parse(form.dataset.spec || "{}");
  const spec = {
    ...base,
    description: f.get("description") || "",
    instructions: f.get("instructions") || "",
    tools: f.getAll("tools"),
    budget: { ...(base.budget || {}), maxTurns: Number(f.get("maxTurns") || 30) },
    memory: { ...(base.memory || {}), enabled: f.get("memory") === "on" },
    workspace: { ...(base.workspace || {}), persistent: f.get("workspacePersistent") === "on" },
    steering: { ...(base.steering || {}), pending: f.get("steeringPending") || "queue", onInterrupt: f.get("steeringOnInterrupt") || "end" },
  };
  if (f.get("workspaceSize")) spec.workspace.size = String(f.get("workspaceSize"));
  // An empty model field: the installation's default model (the operator's operator.defaultModel).
  const model = String(f.get("model") || "").trim();
  if (model) spec.model = { ...(base.model || {}), name: model };
  else delete spec.model;
  const hosts = String(f.get("allowedHosts") || "").split(",").map((s) => s.trim()).filter(Boolean);
  if (hosts.length) spec.http = { ...(base.http || {}), allowedHosts: hosts };
  else delete spec.http;
  if (f.get("maxCostPerRunUSD")) spec.budget.maxCostPerRunUSD = String(f.get("maxCostPerRunUSD"));
  else delete spec.budget.maxCostPerRunUSD;
  if (f.get("cron")) spec.schedule = { ...(base.schedule || {}), cron: f.get("cron"), timeZone: f.get("timeZone") || "UTC" };
  else delete spec.schedule;
  return { name: f.get("name"), spec };
}

function showFieldErrors(form, detail) {
  form.querySelectorAll(".field-error").forEach((p) => (p.textContent = ""));
  if (!Array.isArray(detail)) return;
  for (const d of detail) {
    const path = d.loc.slice(1).join(".");
    let target = null;
    for (const p of form.querySelectorAll(".field-error")) {
      if (path === p.dataset.for || path.startsWith(p.dataset.for + ".")) {
        if (!target || p.dataset.for.length > target.dataset.for.length) target = p;
      }
    }
    (target || form.querySelector('[data-for="spec"]')).textContent += `${path}: ${d.msg} `;
  }
}

document.addEventListener("submit", async (ev) => {
  const form = ev.target;
  if (form.id === "agent-form") {
    ev.preventDefault();
    const id = form.dataset.id;
    const r = await command(id ? "PUT" : "POST", id ? `/api/agents/${encodeURIComponent(id)}` : "/api/agents", formSpec(form), [200, 201]);
    if (r && r.ok) location.href = `/agents/${encodeURIComponent(r.data.id)}`;
    else if (r) showFieldErrors(form, r.data && r.data.detail);
  } else if (form.id === "run-form") {
    ev.preventDefault();
    const text = new FormData(form).get("input");
    const r = await command("POST", `/api/agents/${encodeURIComponent(form.dataset.id)}/runs`, text ? { input: text } : {}, [202]);
    if (r && r.ok) toast(`Run ${r.data.execution} accepted (correlation ${r.data.correlationId.slice(0, 8)})`);
  } else if (form.id === "reply-form") {
    ev.preventDefault();
    const box = $("#reply-message");
    const r = await command("POST", `/api/executions/${encodeURIComponent(form.dataset.id)}/messages`, { message: box.value }, [201, 202]);
    if (r && r.ok) box.value = "";
    if (r && r.status === 202) { toast("Queued: the run gets it at its next turn"); steered(r.data.message); }
    else if (r && r.ok) toast(`Follow-up ${r.data.id} started: it joins the thread below`);
  } else if (form.id === "agent-backfill-form") {
    ev.preventDefault();
    const at = (name) => new Date(form.elements[name].value).toISOString();  // local time, sent as UTC
    const url = `/api/agents/${encodeURIComponent(form.dataset.id)}/backfill`;
    const r = await command("POST", url, { start: at("start"), end: at("end") }, [200]);
    if (r && r.ok) toast("backfill requested: its runs appear below as the operator starts them");
  } else if (form.id === "token-form") {
    ev.preventDefault();
    const r = await command("POST", "/api/tokens", { name: new FormData(form).get("name") }, [201]);
    if (r && r.ok) { const p = $("#new-token"); p.textContent = `New token (copy it now, it is not shown again): ${r.data.token}`; p.hidden = false; }
  } else if (form.id === "token-login") {
    ev.preventDefault();
    const r = await command("POST", "/api/session/token", { token: new FormData(form).get("token") }, [200]);
    if (r && r.ok) location.href = "/";
  }
});

// The sign-in and error pages show nothing live (signed out, the stream would answer 401 again and again).
if (!["signin", "error"].includes(page)) connect();
if (page === "execution") calls.follow($("#phase").textContent);

// Workflow pages: a Workflow's graph (with the phases of a chosen run), run now, and a run's graph.
// A graph is SVG, one column per dependency depth (a step sits one column right of its deepest
// dependency). A run's graph is redrawn from each `workflowRun` report of the page's event stream
// (app.js's window.agentryStream), and read afresh from /api/workflow-runs/{name} on load and on every
// (re)connect; the Workflow page's graph follows the reports of the Workflow's runs the same way.
// The create/edit form's step editor is workflow_form.js. Uses h(), $, toast(), command(), pill(), when().
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const NODE = { w: 190, h: 62, gapX: 70, gapY: 22, pad: 12, top: 30 };  // top: room for arched edges

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

// Depth of each step: 0 without dependencies, else 1 + the deepest dependency (the API server refuses
// cycles, so this ends; an unknown dependency counts as a root).
function depths(steps) {
  const byName = new Map(steps.map((st) => [st.name, st]));
  const memo = new Map();
  const depth = (name, seen) => {
    if (memo.has(name)) return memo.get(name);
    const st = byName.get(name);
    if (!st || seen.has(name)) return 0;
    seen.add(name);
    const d = st.dependsOn.length ? 1 + Math.max(...st.dependsOn.map((n) => (byName.has(n) ? depth(n, seen) : -1))) : 0;
    memo.set(name, d);
    return d;
  };
  steps.forEach((st) => depth(st.name, new Set()));
  return memo;
}

function layout(steps) {
  const d = depths(steps);
  const columns = [];
  steps.forEach((st) => (columns[d.get(st.name)] ||= []).push(st));
  const at = new Map();
  columns.forEach((col, x) => col.forEach((st, y) => at.set(st.name, {
    x: NODE.pad + x * (NODE.w + NODE.gapX), y: NODE.top + y * (NODE.h + NODE.gapY),
  })));
  // Array.from, not map: a cycle in a draft can leave a depth without steps (a hole map would skip).
  const rows = Math.max(1, ...Array.from(columns, (c) => (c ? c.length : 0)));
  return { at, width: NODE.pad * 2 + columns.length * (NODE.w + NODE.gapX) - NODE.gapX, height: NODE.top + NODE.pad + rows * (NODE.h + NODE.gapY) - NODE.gapY };
}

// Between neighbouring columns an S-curve from middle to middle; across columns an arch from near the
// tops, above the row, so that it does not run through the steps in between.
function edgePath(a, b) {
  const x1 = a.x + NODE.w, x2 = b.x;
  if (x2 - x1 <= NODE.gapX) {
    const y1 = a.y + NODE.h / 2, y2 = b.y + NODE.h / 2, mid = (x1 + x2) / 2;
    return `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`;
  }
  const y1 = a.y + 12, y2 = b.y + 12, top = Math.min(a.y, b.y) - 20;
  return `M${x1},${y1} C${x1 + 60},${top} ${x2 - 60},${top} ${x2},${y2}`;
}

// A node's second and third lines: its phase and cost in a run (or the agent it runs), else its agent.
function nodeLines(st) {
  const agent = st.agent ? `agent ${st.agent}` : "";
  if (!st.phase) return [agent, ""];
  return [st.phase, st.attempts ? `$${st.costUSD} · ${st.tokens} tok${st.attempts > 1 ? ` · ${st.attempts} tries` : ""}` : agent];
}

// `steps`: [{name, dependsOn, agent?, phase?, execution?, ...}] (a run's steps, or a Workflow's).
function drawGraph(svg, steps) {
  const { at, width, height } = layout(steps);
  svg.setAttribute("viewBox", `0 0 ${Math.max(width, 200)} ${height}`);
  svg.setAttribute("width", Math.max(width, 200));
  svg.setAttribute("height", height);
  const arrow = `${svg.id}-arrow`;
  const defs = s("defs", {}, s("marker", { id: arrow, viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" },
    s("path", { class: "arrow", d: "M0,0 L10,5 L0,10 z" })));
  const edges = steps.flatMap((st) => st.dependsOn.filter((n) => at.has(n)).map((n) =>
    s("path", { class: "edge", d: edgePath(at.get(n), at.get(st.name)), "marker-end": `url(#${arrow})`, "data-from": n, "data-to": st.name })));
  const nodes = steps.map((st) => {
    const p = at.get(st.name);
    const [second, third] = nodeLines(st);
    const attrs = { class: st.phase ? `node phase-${st.phase}` : "node", "data-step": st.name, transform: `translate(${p.x},${p.y})` };
    if (st.phase) attrs["data-phase"] = st.phase;
    const g = s("g", attrs,
      s("title", {}, st.agent ? `${st.name} (agent ${st.agent})` : st.name),
      s("rect", { width: NODE.w, height: NODE.h, rx: 8 }),
      s("text", { x: 10, y: 20, class: "name" }, st.name),
      s("text", { x: 10, y: 38, class: st.phase ? "phase" : "agent" }, second),
      s("text", { x: 10, y: 54, class: st.phase && st.attempts ? "cost" : "agent" }, third));
    return st.execution ? s("a", { href: `/executions/${encodeURIComponent(st.execution)}` }, g) : g;
  });
  svg.replaceChildren(defs, ...edges, ...nodes);
}

function renderRun(run) {
  drawGraph($("#run-graph"), run.steps);
  $("#run-phase").textContent = run.phase;
  $("#run-phase").className = `pill phase-${run.phase}`;
  $("#run-reason").textContent = run.reason || "";
  $("#run-progress").textContent = run.progress || "";
  $("#run-message").textContent = run.message || "";
  $("#run-tokens").textContent = run.totals.tokens || 0;
  $("#run-cost").textContent = run.totals.costUSD || "0";
  $("#run-steps tbody").replaceChildren(...run.steps.map((st) => h("tr", { "data-step": st.name },
    h("td", {}, st.name), h("td", {}, st.agent ? h("a", { href: `/agents/${encodeURIComponent(st.agent)}` }, st.agent) : "—"),
    h("td", {}, pill(st.phase, `phase-${st.phase}`), " ", st.message || ""),
    h("td", {}, st.attempts),
    h("td", {}, st.execution ? h("a", { href: `/executions/${encodeURIComponent(st.execution)}` }, st.execution) : "—"),
    h("td", {}, when(st.startTime)), h("td", {}, when(st.completionTime)),
    h("td", {}, st.tokens), h("td", {}, `$${st.costUSD}`))));
}

async function readRun(name) {
  const res = await fetch(`/api/workflow-runs/${encodeURIComponent(name)}`, { credentials: "same-origin" }).catch(() => null);
  if (res && res.ok) renderRun(await res.json());
}

function followRun(name) {
  const stream = window.agentryStream;
  readRun(name);
  // A snapshot starts every (re)connection: whatever changed while away is read once.
  stream.addEventListener("snapshot", () => readRun(name));
  stream.addEventListener("report", (ev) => {
    const report = JSON.parse(ev.data);
    if (report.kind === "workflowRun" && report.workflowRun === name) {
      renderRun(report.run);
      document.body.dataset.runEventId = ev.lastEventId;
    }
  });
}

// The Workflow page: its steps from the spec; a chosen run's step phases laid over them by name.
const workflowPage = { workflow: null, runs: new Map() };

function specSteps(spec) {
  return ((spec && spec.steps) || []).filter((st) => st && st.name).map((st) => ({
    name: String(st.name), agent: (st.agentRef && st.agentRef.name) || "", dependsOn: Array.isArray(st.dependsOn) ? st.dependsOn : [],
  }));
}

function drawWorkflow() {
  const svg = $("#workflow-graph");
  const chosen = workflowPage.runs.get($("#graph-run").value);
  const ran = new Map(((chosen && chosen.steps) || []).map((st) => [st.name, st]));
  drawGraph(svg, specSteps(workflowPage.workflow.spec).map((st) => ({ ...(ran.get(st.name) || {}), ...st })));
  svg.dataset.run = chosen ? chosen.name : "";
}

function keepRun(run) {
  workflowPage.runs.set(run.name, run);
  const select = $("#graph-run");
  const label = `${run.name} (${run.phase})`;
  const option = [...select.options].find((o) => o.value === run.name);
  if (option) option.textContent = label;
  else select.insertBefore(h("option", { value: run.name }, label), select.options[1] || null);  // newest first
  if (select.value === run.name) drawWorkflow();
}

async function readRuns(id) {
  const res = await fetch(`/api/workflows/${encodeURIComponent(id)}/runs`, { credentials: "same-origin" }).catch(() => null);
  if (res && res.ok) (await res.json()).items.reverse().forEach(keepRun);
}

function followWorkflow() {
  const data = JSON.parse($("#workflow-data").textContent);
  workflowPage.workflow = data.workflow;
  data.runs.forEach((run) => workflowPage.runs.set(run.name, run));
  drawWorkflow();
  $("#graph-run").addEventListener("change", drawWorkflow);
  const stream = window.agentryStream;
  stream.addEventListener("snapshot", () => readRuns(data.workflow.id));
  stream.addEventListener("report", (ev) => {
    const report = JSON.parse(ev.data);
    if (report.kind === "workflowRun" && report.run && report.run.workflow === data.workflow.id) {
      keepRun(report.run);
      document.body.dataset.runEventId = ev.lastEventId;
    }
  });
}

document.addEventListener("submit", async (ev) => {
  const form = ev.target;
  if (form.id === "workflow-form") {
    ev.preventDefault();
    let spec;
    try { spec = JSON.parse(form.elements.spec.value); } catch (err) { formErrors(form, [{ loc: ["body", "spec"], msg: `not JSON: ${err.message}` }]); return; }
    const id = form.dataset.id;
    const url = id ? `/api/workflows/${encodeURIComponent(id)}` : "/api/workflows";
    const r = await command(id ? "PUT" : "POST", url, { name: form.elements.name.value, spec }, [200, 201]);
    if (r && r.ok) location.href = `/workflows/${encodeURIComponent(r.data.id)}`;
    else if (r) formErrors(form, r.data && r.data.detail);
  } else if (form.id === "workflow-run-form") {
    ev.preventDefault();
    const parameters = Object.fromEntries([...new FormData(form)].filter(([, v]) => v !== ""));
    await runWorkflow(form.dataset.id, parameters);
  } else if (form.id === "workflow-backfill-form") {
    ev.preventDefault();
    // datetime-local inputs are the browser's local time: sent as UTC instants.
    const at = (name) => new Date(form.elements[name].value).toISOString();
    const body = { start: at("start"), end: at("end") };
    const r = await command("POST", `/api/workflows/${encodeURIComponent(form.dataset.id)}/backfill`, body, [200]);
    if (r && r.ok) { toast("backfill requested: its runs appear below"); setTimeout(() => location.reload(), 2000); }
  }
});

async function runWorkflow(id, parameters) {
  const r = await command("POST", `/api/workflows/${encodeURIComponent(id)}/runs`, { parameters }, [201]);
  if (r && r.ok) location.href = `/workflow-runs/${encodeURIComponent(r.data.name)}`;
}

document.addEventListener("click", async (ev) => {
  const action = ev.target.dataset && ev.target.dataset.action;
  if (action === "run-workflow") await runWorkflow(ev.target.dataset.id, {});
  else if (action === "delete-workflow" && confirm("Delete this workflow and its runs?")) {
    const r = await command("DELETE", `/api/workflows/${encodeURIComponent(ev.target.dataset.id)}`, undefined, [204]);
    if (r && r.ok) location.href = "/workflows";
  }
});

if (document.body.dataset.page === "workflow") followWorkflow();
if (document.body.dataset.page === "workflow-run") {
  renderRun(JSON.parse($("#run-data").textContent));
  followRun(document.body.dataset.run);
}

// Workflow pages: the create/edit form, run now, and a run's graph. The graph is SVG, one column per
// dependency depth (a step sits one column right of its deepest dependency), redrawn from each
// `workflowRun` report of the page's event stream (app.js's window.agentryStream), and read afresh
// from /api/workflow-runs/{name} on load and on every (re)connect. Uses h(), $, toast(), command().
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const NODE = { w: 190, h: 62, gapX: 70, gapY: 22, pad: 12 };

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
    x: NODE.pad + x * (NODE.w + NODE.gapX), y: NODE.pad + y * (NODE.h + NODE.gapY),
  })));
  const rows = Math.max(1, ...columns.map((c) => (c ? c.length : 0)));
  return { at, width: NODE.pad * 2 + columns.length * (NODE.w + NODE.gapX) - NODE.gapX, height: NODE.pad * 2 + rows * (NODE.h + NODE.gapY) - NODE.gapY };
}

function drawGraph(svg, run) {
  const { at, width, height } = layout(run.steps);
  svg.setAttribute("viewBox", `0 0 ${Math.max(width, 200)} ${height}`);
  svg.setAttribute("width", Math.max(width, 200));
  svg.setAttribute("height", height);
  const edges = run.steps.flatMap((st) => st.dependsOn.filter((n) => at.has(n)).map((n) => {
    const a = at.get(n), b = at.get(st.name);
    const x1 = a.x + NODE.w, y1 = a.y + NODE.h / 2, x2 = b.x, y2 = b.y + NODE.h / 2, mid = (x1 + x2) / 2;
    return s("path", { class: "edge", d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, "data-from": n, "data-to": st.name });
  }));
  const nodes = run.steps.map((st) => {
    const p = at.get(st.name);
    const cost = st.attempts ? `$${st.costUSD} · ${st.tokens} tok${st.attempts > 1 ? ` · ${st.attempts} tries` : ""}` : "";
    const g = s("g", { class: `node phase-${st.phase}`, "data-step": st.name, "data-phase": st.phase, transform: `translate(${p.x},${p.y})` },
      s("rect", { width: NODE.w, height: NODE.h, rx: 8 }),
      s("text", { x: 10, y: 20, class: "name" }, st.name),
      s("text", { x: 10, y: 38, class: "phase" }, st.phase),
      s("text", { x: 10, y: 54, class: "cost" }, cost));
    return st.execution ? s("a", { href: `/executions/${encodeURIComponent(st.execution)}` }, g) : g;
  });
  svg.replaceChildren(...edges, ...nodes);
}

function renderRun(run) {
  drawGraph($("#run-graph"), run);
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

function formErrors(form, detail) {
  form.querySelectorAll(".field-error").forEach((p) => (p.textContent = ""));
  for (const d of Array.isArray(detail) ? detail : []) {
    const key = d.loc[1] === "name" ? "name" : "spec";
    form.querySelector(`.field-error[data-for="${key}"]`).textContent += `${d.loc.slice(1).join(".")}: ${d.msg} `;
  }
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

if (document.body.dataset.page === "workflow-run") {
  renderRun(JSON.parse($("#run-data").textContent));
  followRun(document.body.dataset.run);
}

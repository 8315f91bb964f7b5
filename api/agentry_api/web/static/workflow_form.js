// The Workflow form's step editor: one row per step (name, agent, the steps it runs after, input), kept
// in step with the whole spec as JSON in the "Advanced" box. The JSON holds the rest (parameters,
// parallelism, a schedule, a step's retries or `when`), is editable too, and is what the form sends.
// A draft graph follows each edit. Mistakes visible here (an empty or repeated name, no agent, an
// unknown step in "after", a cycle) are named on their row as hints; the server decides on save, and
// its 422s are shown on the rows they name and above the JSON. Uses h(), $ (app.js), drawGraph() and
// specSteps() (workflows.js).
"use strict";

const stepForm = { spec: { steps: [] }, agents: [] };

function agentChoice(value, agents) {
  const options = [h("option", { value: "" }, "choose an agent"), ...agents.map((a) => h("option", { value: a.id }, `${a.name} (${a.id})`))];
  if (value && !agents.some((a) => a.id === value)) options.push(h("option", { value }, `${value} (not one of yours)`));
  const select = h("select", { name: "step-agent" }, ...options);
  select.value = value || "";
  return select;
}

function stepRows(steps, agents) {
  return steps.flatMap((st, i) => [
    h("tr", { class: "step", "data-index": i },
      h("td", {}, h("input", { name: "step-name", value: st.name || "", placeholder: "name" })),
      h("td", {}, agentChoice(st.agentRef && st.agentRef.name, agents)),
      h("td", {}, h("input", { name: "step-after", value: (st.dependsOn || []).join(", "), placeholder: "none: runs first" })),
      h("td", {}, h("textarea", { name: "step-input", rows: 1, value: st.input || "" })),
      h("td", {}, h("button", { type: "button", class: "small", "data-action": "remove-step", "data-index": i }, "Remove"))),
    h("tr", { class: "step-error" }, h("td", { colSpan: 5, class: "field-error", "data-step-error": i })),
  ]);
}

// The rows' values into the spec's steps; what the rows do not show of a step is kept.
function readRows(form) {
  const before = stepForm.spec.steps || [];
  stepForm.spec.steps = [...form.querySelectorAll("#steps-editor tr.step")].map((tr, i) => {
    const st = { ...(before[i] || {}) };
    const value = (name) => tr.querySelector(`[name=${name}]`).value;
    st.name = value("step-name").trim();
    st.agentRef = { ...(st.agentRef || {}), name: value("step-agent") };
    const after = value("step-after").split(",").map((n) => n.trim()).filter(Boolean);
    if (after.length) st.dependsOn = after; else delete st.dependsOn;
    if (value("step-input")) st.input = value("step-input"); else delete st.input;
    return st;
  });
}

// What the page can tell is wrong with each step (the operator's webhook checks the rest on save).
function stepProblems(steps) {
  const index = new Map();
  steps.forEach((st, i) => (st.name && !index.has(st.name) ? index.set(st.name, i) : null));
  const problems = steps.map((st, i) => [
    !st.name ? "a step needs a name" : index.get(st.name) !== i ? `another step is named ${st.name}` : null,
    !(st.agentRef && st.agentRef.name) ? "choose an agent" : null,
    ...(st.dependsOn || []).filter((d) => !index.has(d)).map((d) => `after: no step named ${d}`),
  ].filter(Boolean));
  const seen = new Map();  // 1: on the current path, 2: done
  const visit = (i) => {
    seen.set(i, 1);
    for (const d of steps[i].dependsOn || []) {
      const j = index.get(d);
      if (j === undefined) continue;
      if (seen.get(j) === 1) problems[i].push(`after: ${d} comes after ${steps[i].name} again (a cycle)`);
      else if (!seen.has(j)) visit(j);
    }
    seen.set(i, 2);
  };
  steps.forEach((_, i) => (seen.has(i) ? null : visit(i)));
  return problems;
}

function markStep(form, i, text) {
  const cell = form.querySelector(`[data-step-error="${i}"]`);
  if (!cell) return;
  cell.textContent += `${text} `;
  cell.parentElement.previousElementSibling.classList.add("invalid");
}

function clearErrors(form) {
  form.querySelectorAll(".field-error").forEach((p) => (p.textContent = ""));
  form.querySelectorAll("#steps-editor tr.invalid").forEach((tr) => tr.classList.remove("invalid"));
}

// The server's 422: every error above the JSON, and each step's on its row too.
function formErrors(form, detail) {
  clearErrors(form);
  for (const d of Array.isArray(detail) ? detail : []) {
    const key = d.loc[1] === "name" ? "name" : "spec";
    form.querySelector(`.field-error[data-for="${key}"]`).textContent += `${d.loc.slice(1).join(".")}: ${d.msg} `;
    if (d.loc[1] === "spec" && d.loc[2] === "steps" && Number.isInteger(d.loc[3])) {
      markStep(form, d.loc[3], `${d.loc.slice(4).join(".") || "step"}: ${d.msg}`);
    }
  }
}

function showDraft(form) {
  clearErrors(form);
  const steps = stepForm.spec.steps || [];
  stepProblems(steps).forEach((found, i) => found.forEach((text) => markStep(form, i, text)));
  drawGraph($("#draft-graph"), specSteps(stepForm.spec));
}

function renderRows(form) {
  $("#steps-editor tbody").replaceChildren(...stepRows(stepForm.spec.steps || [], stepForm.agents));
  showDraft(form);
}

function writeJson(form) {
  form.elements.spec.value = JSON.stringify(stepForm.spec, null, 2);
}

function startStepForm(form) {
  stepForm.agents = JSON.parse($("#agents-data").textContent);
  try { stepForm.spec = JSON.parse(form.elements.spec.value); } catch (_) { stepForm.spec = { steps: [] }; }
  renderRows(form);
  $("#steps-editor").addEventListener("input", () => { readRows(form); writeJson(form); showDraft(form); });
  form.elements.spec.addEventListener("input", () => {
    try {
      const spec = JSON.parse(form.elements.spec.value);
      if (!spec || typeof spec !== "object" || Array.isArray(spec)) throw new Error("the spec is an object");
      stepForm.spec = spec;
      renderRows(form);
    } catch (err) {
      clearErrors(form);
      form.querySelector('.field-error[data-for="spec"]').textContent = `spec: not JSON: ${err.message}`;
    }
  });
  $("#add-step").addEventListener("click", () => {
    const steps = (stepForm.spec.steps ||= []);
    const last = steps.length ? steps[steps.length - 1].name : "";
    steps.push({ name: `step-${steps.length + 1}`, agentRef: { name: stepForm.agents.length ? stepForm.agents[0].id : "" }, ...(last ? { dependsOn: [last] } : {}) });
    writeJson(form);
    renderRows(form);
  });
  $("#steps-editor").addEventListener("click", (ev) => {
    if (ev.target.dataset.action !== "remove-step") return;
    stepForm.spec.steps.splice(Number(ev.target.dataset.index), 1);
    writeJson(form);
    renderRows(form);
  });
}

if ($("#workflow-form")) startStepForm($("#workflow-form"));

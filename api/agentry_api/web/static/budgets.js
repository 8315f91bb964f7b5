// Budgets page: the manual throttles that apply to the reader (every one, for an admin), and for admins
// the policy and throttle forms, the policies table (the governance file's read-only) and the audit.
// Everything is read from and sent to /api/budgets/*; uses h(), $, toast() and command() of app.js.
"use strict";

const budgets = {
  admin: () => ($("#budget-throttles") || {}).dataset?.admin === "true",
  policies: new Map(),
};

function limitText(l) {
  return [["tokens", "tokens"], ["messages", "messages"], ["costUSD", "USD"]]
    .filter(([k]) => l[k] !== undefined && l[k] !== null)
    .map(([k, unit]) => (k === "costUSD" ? `$${l[k]}` : `${Number(l[k]).toLocaleString()} ${unit}`))
    .join(", ") + ` / ${l.window}`;
}

function fieldErrors(form, detail) {
  form.querySelectorAll(".field-error").forEach((p) => (p.textContent = ""));
  if (!Array.isArray(detail)) return;
  for (const d of detail) {
    const name = d.loc[1];
    const slot = form.querySelector(`.field-error[data-for="${name}"]`);
    if (slot) slot.textContent += `${d.loc.slice(1).join(".")}: ${d.msg} `;
  }
}

async function loadThrottles() {
  const table = $("#budget-throttles");
  if (!table) return;
  const res = await command("GET", "/api/budgets/throttles", undefined, [200]);
  if (!res || !res.ok) return;
  const admin = budgets.admin();
  const cols = admin ? 7 : 6;
  table.tBodies[0].replaceChildren(...(res.data.items.length ? res.data.items.map((t) => h("tr", { "data-throttle": t.id },
    h("td", {}, t.scope), h("td", {}, h("code", {}, t.userId || t.subject)),
    h("td", {}, h("span", { class: `pill zone zone-${t.mode === "refuse" ? "exhausted" : "throttle"}` }, t.mode)),
    h("td", {}, t.until ? when(t.until) : "until lifted"), h("td", { class: "reason" }, t.reason), h("td", {}, t.createdBy),
    admin ? h("td", {}, h("button", { class: "small danger", "data-lift": t.id }, "Lift")) : null,
  )) : [h("tr", { class: "empty" }, h("td", { colSpan: cols }, "No manual throttle applies."))]));
}

async function loadPolicies() {
  const table = $("#budget-policies");
  if (!table) return;
  const res = await command("GET", "/api/budgets/policies", undefined, [200]);
  if (!res || !res.ok) return;
  budgets.policies = new Map(res.data.policies.map((p) => [p.name, p]));
  table.tBodies[0].replaceChildren(...(res.data.policies.length ? res.data.policies.map((p) => h("tr", { "data-policy": p.name, "data-source": p.source },
    h("td", {}, p.name),
    h("td", {}, h("span", { class: `pill source-${p.source}` }, p.source === "config" ? "governance file · read-only" : "admin")),
    h("td", {}, p.scope), h("td", {}, h("code", {}, p.match)), h("td", {}, p.limits.map(limitText).join("; ")),
    h("td", {}, p.updatedBy ? `${p.updatedBy} ${when(p.updatedAt)}` : "—"),
    h("td", {}, p.editable ? [h("button", { class: "small", "data-edit": p.name }, "Edit"), " ",
      h("button", { class: "small danger", "data-delete": p.name }, "Delete")] : ""),
  )) : [h("tr", { class: "empty" }, h("td", { colSpan: 7 }, "No budget policy."))]));
}

async function loadAudit() {
  const table = $("#budget-audit");
  if (!table) return;
  const res = await command("GET", "/api/budgets/audit", undefined, [200]);
  if (!res || !res.ok) return;
  const rows = res.data.items.slice(0, 10);
  table.tBodies[0].replaceChildren(...(rows.length ? rows.map((e) => h("tr", {},
    h("td", {}, when(e.at)), h("td", {}, e.actor), h("td", {}, e.action), h("td", {}, h("code", {}, e.target)),
  )) : [h("tr", { class: "empty" }, h("td", { colSpan: 4 }, "No change yet."))]));
}

function limitRow(l) {
  const input = (name, placeholder, value) => h("input", { name, placeholder, title: placeholder, value: value ?? "" });
  return h("div", { class: "row limit" },
    input("window", "window (5h, day, month)", l && l.window),
    input("tokens", "tokens", l && l.tokens), input("messages", "messages", l && l.messages),
    input("costUSD", "cost USD", l && l.costUSD),
    h("button", { type: "button", class: "small", "data-remove-limit": "1", title: "remove" }, "×"));
}

function resetPolicyForm(policy) {
  const form = $("#policy-form");
  form.reset();
  form.dataset.editing = policy ? policy.name : "";
  form.elements.name.disabled = !!policy;
  $("#policy-form-title").textContent = policy ? `Edit ${policy.name}` : "New budget policy";
  if (policy) {
    form.elements.name.value = policy.name;
    form.elements.scope.value = policy.scope;
    form.elements.match.value = policy.match;
  }
  const box = $("#policy-limits");
  box.querySelectorAll(".limit").forEach((r) => r.remove());
  (policy ? policy.limits : [null]).forEach((l) => box.append(limitRow(l)));
  fieldErrors(form, null);
}

function policyBody(form) {
  const limits = [...form.querySelectorAll(".limit")].map((row) => {
    const limit = { window: row.querySelector('[name="window"]').value.trim() };
    for (const k of ["tokens", "messages"]) { const v = row.querySelector(`[name="${k}"]`).value.trim(); if (v) limit[k] = Number(v); }
    const cost = row.querySelector('[name="costUSD"]').value.trim();
    if (cost) limit.costUSD = cost;
    return limit;
  });
  return { scope: form.elements.scope.value, match: form.elements.match.value.trim() || "*", limits };
}

async function savePolicy(ev) {
  ev.preventDefault();
  const form = ev.target;
  const editing = form.dataset.editing;
  const body = policyBody(form);
  const res = editing
    ? await command("PUT", `/api/budgets/policies/${encodeURIComponent(editing)}`, body, [200])
    : await command("POST", "/api/budgets/policies", { name: form.elements.name.value.trim(), ...body }, [201]);
  if (!res) return;
  if (!res.ok) return fieldErrors(form, res.data && res.data.detail);
  toast(`Budget policy ${res.data.name} saved; the gateway applies it within seconds.`);
  resetPolicyForm(null);
  loadPolicies(); loadAudit();
}

async function saveThrottle(ev) {
  ev.preventDefault();
  const form = ev.target;
  const until = form.elements.until.value ? new Date(form.elements.until.value).toISOString() : null;
  const body = { scope: form.elements.scope.value, subject: form.elements.subject.value.trim() || "*",
    mode: form.elements.mode.value, reason: form.elements.reason.value.trim(), until };
  const res = await command("POST", "/api/budgets/throttles", body, [201]);
  if (!res) return;
  if (!res.ok) return fieldErrors(form, res.data && res.data.detail);
  fieldErrors(form, null);
  form.reset();
  toast(`Throttle ${res.data.id} set on ${res.data.scope} ${res.data.subject}.`);
  loadThrottles(); loadAudit();
}

async function clicked(ev) {
  const t = ev.target.closest("button");
  if (!t) return;
  if (t.dataset.lift && (await command("DELETE", `/api/budgets/throttles/${t.dataset.lift}`, undefined, [200]))?.ok) {
    toast(`Throttle ${t.dataset.lift} lifted.`); loadThrottles(); loadAudit();
  } else if (t.dataset.edit) {
    resetPolicyForm(budgets.policies.get(t.dataset.edit));
    $("#policy-form").scrollIntoView({ block: "center" });
  } else if (t.dataset.delete && confirm(`Delete budget policy ${t.dataset.delete}?`)) {
    if ((await command("DELETE", `/api/budgets/policies/${encodeURIComponent(t.dataset.delete)}`, undefined, [204]))?.ok) {
      toast(`Budget policy ${t.dataset.delete} deleted.`); loadPolicies(); loadAudit();
    }
  } else if (t.dataset.removeLimit && document.querySelectorAll("#policy-limits .limit").length > 1) {
    t.closest(".limit").remove();
  }
}

if (page === "budgets") {
  loadThrottles();
  if ($("#budget-admin")) {
    resetPolicyForm(null);
    $("#policy-form").addEventListener("submit", savePolicy);
    $("#throttle-form").addEventListener("submit", saveThrottle);
    $("#add-limit").addEventListener("click", () => $("#policy-limits").append(limitRow(null)));
    $("#policy-reset").addEventListener("click", () => resetPolicyForm(null));
    loadPolicies(); loadAudit();
  }
  document.addEventListener("click", clicked);
}

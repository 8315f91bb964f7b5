// The Memory panel of an agent's page (docs/runs.md, "Memory across runs"): the entries of the
// agent's memory from /api/agents/{id}/memory, each editable and deletable; the form writes one.
// Uses app.js's h, $, when, toast and command.
"use strict";

(function memoryPanel() {
  const panel = $("#memory");
  if (!panel) return;
  const base = `/api/agents/${encodeURIComponent(panel.dataset.agent)}/memory`;
  const form = $("#memory-form");

  function row(entry) {
    const edit = h("button", { class: "small", type: "button", "data-memory-action": "edit", "data-key": entry.key }, "Edit");
    const del = h("button", { class: "small danger", type: "button", "data-memory-action": "delete", "data-key": entry.key }, "Delete");
    return h("tr", { "data-key": entry.key },
      h("td", {}, h("code", {}, entry.key)), h("td", { class: "memory-value" }, entry.value),
      h("td", {}, when(entry.updatedAt)), h("td", {}, entry.updatedBy), h("td", {}, edit, " ", del));
  }

  async function load() {
    const r = await command("GET", base, undefined, [200]);
    if (!r || !r.ok) { $("#memory-count").textContent = "Memory cannot be read now."; return; }
    const entries = r.data.entries;
    panel.entries = new Map(entries.map((e) => [e.key, e]));
    $("#memory-count").textContent = `${r.data.count} of at most ${r.data.maxEntries} entries`;
    const body = $("#memory-entries tbody");
    body.replaceChildren(...(entries.length ? entries.map(row) : [h("tr", { class: "empty" }, h("td", { colSpan: 5 }, "Nothing remembered yet."))]));
  }

  panel.addEventListener("click", async (ev) => {
    const btn = ev.target.closest("button[data-memory-action]");
    if (!btn) return;
    const key = btn.dataset.key;
    if (btn.dataset.memoryAction === "edit") {
      form.elements.key.value = key;
      form.elements.value.value = panel.entries.get(key).value;
      form.elements.value.focus();
    } else if (confirm(`Forget ${key}?`)) {
      const r = await command("DELETE", `${base}/${encodeURIComponent(key)}`, undefined, [204]);
      if (r && r.ok) { toast(`${key} forgotten`); load(); }
    }
  });

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const key = form.elements.key.value.trim();
    const r = await command("PUT", `${base}/${encodeURIComponent(key)}`, { value: form.elements.value.value }, [200]);
    if (r && r.ok) { toast(`${key} saved`); form.reset(); load(); }
  });

  load();
})();

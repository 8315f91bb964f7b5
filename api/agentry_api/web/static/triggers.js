// The Triggers pages: the create form (the answer's key is shown once, here, and never stored), and a
// trigger's Rotate key and Delete buttons. Uses app.js's $, toast and command.
"use strict";

(function triggers() {
  function showKey(data) {
    $("#secret-value").textContent = data.secret;
    if ($("#secret-url")) $("#secret-url").textContent = data.url;
    if ($("#secret-link")) $("#secret-link").href = `/triggers/${encodeURIComponent(data.name)}`;
    $("#trigger-secret").hidden = false;
  }

  const form = $("#trigger-form");
  if (form) {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      form.querySelectorAll(".field-error").forEach((p) => (p.textContent = ""));
      const f = new FormData(form);
      const body = { name: f.get("name"), agent: f.get("agent"), scheme: f.get("scheme") };
      if (f.get("input")) body.mapping = { input: f.get("input") };
      const r = await command("POST", "/api/triggers", body, [201]);
      if (r && r.ok) { form.reset(); showKey(r.data); toast(`trigger ${r.data.name} created`); }
      else if (r && Array.isArray(r.data && r.data.detail)) {
        for (const d of r.data.detail) {
          const p = form.querySelector(`.field-error[data-for="${d.loc[1]}"]`);
          if (p) p.textContent = `${d.loc.slice(1).join(".")}: ${d.msg}`;
        }
      }
    });
  }

  document.addEventListener("click", async (ev) => {
    const btn = ev.target.closest("button[data-trigger-action]");
    if (!btn) return;
    const url = `/api/triggers/${encodeURIComponent(btn.dataset.name)}`;
    if (btn.dataset.triggerAction === "rotate" && confirm("Make a new key? The current one stops working.")) {
      const r = await command("POST", `${url}/rotate-secret`, undefined, [200]);
      if (r && r.ok) showKey(r.data);
    } else if (btn.dataset.triggerAction === "delete" && confirm(`Delete trigger ${btn.dataset.name}?`)) {
      const r = await command("DELETE", url, undefined, [204]);
      if (r && r.ok) location.href = "/triggers";
    }
  });
})();

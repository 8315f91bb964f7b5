// The Notifications page: subscribe (a webhook's signing secret is shown once, here), test, enable or
// disable, change a URL, delete, and redeliver a dead letter. Uses app.js's $, toast and command.
"use strict";

(function notifications() {
  const form = $("#subscription-form");
  if (form) {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      form.querySelectorAll(".field-error").forEach((p) => (p.textContent = ""));
      const f = new FormData(form);
      const body = {
        name: f.get("name"),
        sink: f.get("sink"),
        url: f.get("url"),
        events: f.getAll("events"),
        scope: { kind: f.get("scope"), name: f.get("target") || null },
      };
      const r = await command("POST", "/api/notifications/subscriptions", body, [201]);
      if (r && r.ok) {
        const p = $("#new-secret");
        p.textContent = r.data.secret
          ? `Signing secret of ${r.data.name} (copy it now, it is not shown again): ${r.data.secret}`
          : `Subscribed ${r.data.name}.`;
        p.hidden = false;
        form.reset();
        toast(`subscription ${r.data.name} created`);
      } else if (r && Array.isArray(r.data && r.data.detail)) {
        for (const d of r.data.detail) {
          const p = form.querySelector(`.field-error[data-for="${d.loc[1]}"]`);
          if (p) p.textContent = `${d.loc.slice(1).join(".")}: ${d.msg}`;
        }
      }
    });
  }

  document.addEventListener("click", async (ev) => {
    const btn = ev.target.closest("button[data-notify-action]");
    if (!btn) return;
    const id = encodeURIComponent(btn.dataset.id);
    const sub = `/api/notifications/subscriptions/${id}`;
    const action = btn.dataset.notifyAction;
    if (action === "test") {
      const r = await command("POST", `${sub}/test`, undefined, [200]);
      if (r && r.ok) toast(r.data.delivered ? `delivered (${r.data.status})` : `not delivered: ${r.data.error}`, !r.data.delivered);
    } else if (action === "toggle") {
      const r = await command("PATCH", sub, { enabled: btn.dataset.enabled !== "true" }, [200]);
      if (r && r.ok) location.reload();
    } else if (action === "edit") {
      const url = prompt(`New URL (now ${btn.dataset.urlHint})`);
      if (!url) return;
      const r = await command("PATCH", sub, { url }, [200]);
      if (r && r.ok) location.reload();
    } else if (action === "delete" && confirm(`Delete subscription ${btn.dataset.name}?`)) {
      const r = await command("DELETE", sub, undefined, [204]);
      if (r && r.ok) location.reload();
    } else if (action === "redeliver") {
      const r = await command("POST", `/api/notifications/deliveries/${id}/redeliver`, undefined, [202]);
      if (r && r.ok) { toast("sent again"); btn.closest("tr").remove(); }
    }
  });
})();

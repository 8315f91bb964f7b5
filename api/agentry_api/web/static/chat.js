// The chat designer (WS /api/chat, docs/api.md "Chat designer"): messages, the draft and its diff,
// save, and "Try it": the draft runs once and its run's parts (status, tool calls and results,
// approvals, result, tokens and cost) arrive as `trial` frames into the conversation. Uses `h`, `$`
// and `toast` from app.js.
"use strict";

const TERMINAL = new Set(["Succeeded", "Failed", "Cancelled", "Skipped"]); // agentry_common.models

const chat = {
  socket: null,
  trials: new Map(), // execution → its box in the log
  log() { return $("#chat-log"); },
  add(el) { this.log().append(el); this.log().scrollTop = 1e9; return el; },
  say(role, text) { return this.add(h("div", { class: `msg ${role}` }, text)); },
  open() {
    const box = $("#chat");
    if (!box) return;
    const qs = box.dataset.agent ? `?agent=${encodeURIComponent(box.dataset.agent)}` : "";
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/chat${qs}`);
    this.socket = ws;
    ws.onmessage = (ev) => this.frame(JSON.parse(ev.data));
    ws.onclose = (ev) => { if (ev.code >= 4000) this.say("error", `chat closed: ${ev.reason}`); };
  },
  frame(f) {
    if (f.type === "hello") this.hello(f);
    else if (f.type === "message") this.say("assistant", f.text);
    else if (f.type === "error") this.say("error", f.message);
    else if (f.type === "draft") this.draft(f);
    else if (f.type === "trial") this.part(f.execution, f.part);
    else if (f.type === "decided") toast(`Approval ${f.state}`);
    else if (f.type === "saved") location.href = `/agents/${encodeURIComponent(f.agent.id)}`;
  },
  hello(f) {
    // Each stored trial goes where it was started: after its `after` first messages.
    const trials = f.trials || [];
    const show = (after) => trials.filter((t) => Math.min(t.after, f.messages.length) === after)
      .forEach((t) => t.parts.forEach((p) => this.part(t.execution, p)));
    show(0);
    f.messages.forEach((m, i) => { this.say(m.role, m.content); show(i + 1); });
  },
  draft(f) {
    const box = $("#chat-draft");
    box.hidden = false;
    box.querySelector("tbody").replaceChildren(...f.diff.map((d) => h("tr", {},
      h("th", {}, d.field), h("td", { class: "before" }, JSON.stringify(d.before) ?? "—"), h("td", { class: "after" }, JSON.stringify(d.after)))));
    $("#chat-draft-errors").textContent = f.errors.map((e) => `${e.loc.join(".")}: ${e.msg}`).join("; ");
    $("#chat-save").disabled = !f.valid;
    $("#chat-try").disabled = !f.valid;
  },
  box(execution) {
    let box = this.trials.get(execution);
    if (!box) {
      box = this.add(h("div", { class: "msg trial", "data-execution": execution },
        h("div", { class: "trial-head" }, "Trial run ", h("a", { href: `/executions/${encodeURIComponent(execution)}` }, execution)),
        h("ul", { class: "trial-parts" })));
      this.trials.set(execution, box);
    }
    return box;
  },
  part(execution, p) {
    const box = this.box(execution);
    const line = this.line(p);
    if (line) { box.querySelector("ul").append(h("li", { class: `part ${p.kind}` }, line)); this.log().scrollTop = 1e9; }
    if (p.kind === "status") box.dataset.phase = p.phase;
    if (p.kind === "done" || (p.kind === "status" && TERMINAL.has(p.phase))) box.classList.add("ended");
  },
  line(p) {
    switch (p.kind) {
      case "started": return `Trying "${p.agent}"${p.input ? ` with: ${p.input}` : ""}`;
      case "status": return `${p.phase}${p.reason && p.reason !== p.phase ? ` (${p.reason})` : ""}${p.message ? `: ${p.message}` : ""}`;
      case "tool_call": return `→ ${p.tool} [${p.risk || "?"}] ${p.arguments || ""}`;
      case "tool_result": return `← ${p.tool}${p.isError ? " (error)" : ""}: ${p.summary || ""}`;
      case "approval": return this.approval(p);
      case "result": return h("span", {}, h("strong", {}, "Result: "), p.summary || "(no text)");
      case "usage": return `Tokens: ${p.inputTokens ?? 0} in / ${p.outputTokens ?? 0} out · cost $${p.costUSD ?? "0"}${p.model ? ` · ${p.model}` : ""}`;
      default: return null;
    }
  },
  approval(p) {
    const text = `Approval ${p.state}: ${p.tool || ""} ${p.summary || ""} [${p.risk || "?"}] `;
    if (p.state !== "pending") return text;
    return h("span", {}, text,
      h("button", { class: "primary", "data-approval": p.id, "data-approved": "true" }, "Approve"), " ",
      h("button", { "data-approval": p.id, "data-approved": "false" }, "Deny"), " ",
      h("a", { href: p.url || "/approvals" }, "approvals page"));
  },
  send(frame) { if (this.socket && this.socket.readyState === 1) { this.socket.send(JSON.stringify(frame)); return true; } return false; },
};

document.addEventListener("submit", (ev) => {
  const form = ev.target;
  if (form.id !== "chat-form") return;
  ev.preventDefault();
  const input = form.querySelector("input");
  if (input.value.trim() && chat.send({ type: "message", text: input.value })) {
    chat.say("user", input.value);
    input.value = "";
  }
});
document.addEventListener("click", (ev) => {
  const t = ev.target;
  if (t.id === "chat-save") chat.send({ type: "save" });
  else if (t.id === "chat-try") {
    const input = $("#chat-try-input").value.trim();
    chat.send(input ? { type: "try", input } : { type: "try" });
  } else if (t.dataset && t.dataset.approval) {
    chat.send({ type: "decide", approval: t.dataset.approval, approved: t.dataset.approved === "true" });
    t.parentElement.querySelectorAll("button").forEach((b) => (b.disabled = true));
  }
});

chat.open();

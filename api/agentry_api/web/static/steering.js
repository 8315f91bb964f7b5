// The run page's steering part (docs/runs.md, "Steering a live run"): the messages sent to a live
// run with their states, the agent's policies, and the Interrupt button. The states change at the
// gateway (queued -> delivered as the run takes them), so they are read from the API every few
// seconds while the run is live. app.js owns the message box (replyState) and posts Send/Reply.
"use strict";

const steerForm = $("#reply-form");
const POLICY = {
  queue: "a second message waits after the first; both are delivered, in order",
  replace: "a second message replaces one that is still queued",
  reject: "a second message is refused until the first is delivered",
};
const AFTER_INTERRUPT = { end: "the run ends with its last answer", wait: "the run waits for your next message" };

function steered(message) {
  const list = $("#steer-messages");
  if (!list || !message) return;
  const row = h("li", { "data-seq": String(message.seq), "data-state": message.state },
    pill(message.state, `steer-${message.state}`), " ",
    message.interrupt ? h("strong", {}, "Interrupt ") : null,
    message.text || "", " ", h("span", { class: "muted" }, when(message.at)));
  const old = list.querySelector(`li[data-seq="${message.seq}"]`);
  if (old) old.replaceWith(row); else list.append(row);
  list.hidden = false;
}

async function loadSteering() {
  let res;
  try {
    res = await fetch(`/api/executions/${encodeURIComponent(steerForm.dataset.id)}/messages`, { credentials: "same-origin" });
  } catch (_) { return; }
  if (!res.ok) return;
  const info = await res.json();
  steerForm.dataset.steerable = String(info.available);
  const phase = $("#phase").textContent;
  if (!FINISHED.includes(phase)) {
    $("#steer-policy").textContent = info.available
      ? `Double-texting: ${info.pending} (${POLICY[info.pending]}). Interrupt ends the current turn; then ${AFTER_INTERRUPT[info.onInterrupt]}${info.onInterrupt === "wait" ? ` (up to ${info.waitSeconds} s)` : ""}.`
      : "";
    replyState({ phase });
  } else {
    $("#steer-policy").textContent = "";
  }
  info.messages.forEach(steered);
}

if (steerForm) {
  $("#reply-interrupt").addEventListener("click", async () => {
    const box = $("#reply-message");
    const url = `/api/executions/${encodeURIComponent(steerForm.dataset.id)}/interrupt`;
    const r = await command("POST", url, { message: box.value.trim() }, [202]);
    if (r && r.ok) { box.value = ""; toast("Interrupt queued: the run stops its current turn at its next step"); steered(r.data.message); }
  });
  loadSteering();
  const poll = setInterval(() => {
    if (FINISHED.includes($("#phase").textContent)) { clearInterval(poll); loadSteering(); return; }
    loadSteering();
  }, 2000);
}

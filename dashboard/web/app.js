// The dashboard page: renders the page model the server pushes (server-sent events) with DOM
// calls only (no innerHTML, so no text from the cluster is ever parsed as markup).
"use strict";

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    e.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return e;
}

const units = ["B", "KiB", "MiB", "GiB", "TiB"];
function bytes(n) {
  n = n || 0;
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}
function duration(s) {
  if (!s) return "–";
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return (h ? h + " h " : "") + (h || m ? m + " min " : "") + (h ? "" : sec + " s");
}
function when(t, now) {
  if (!t) return "never";
  const d = new Date(t), ago = Math.max(0, Math.round((now - d) / 1000));
  return d.toLocaleString() + " (" + duration(ago) + " ago)";
}
function phaseClass(p) {
  switch (p) {
    case "Completed": return "phase-ok";
    case "Failed": case "PartiallyFailed": case "Refused": case "Cancelled": case "FailedValidation": return "phase-bad";
    case "Transferring": case "Copying": case "InProgress": case "WaitingForPluginOperations": case "Finalizing": return "phase-run";
  }
  return "phase-wait";
}
// prose renders the troubleshooting table's Markdown code spans (`…`) as <code>, the rest as text.
function prose(text) {
  return text.split("`").map((part, i) => (i % 2 ? el("code", { text: part }) : part));
}
function fact(label, value) {
  return el("div", {}, el("dt", { text: label }), el("dd", { text: value }));
}

let cancelAllowed = false;

function renderItem(it, now) {
  const what = (it.kind === "PVC" ? "PVC " : "Image stream ") + it.namespace + "/" + it.name;
  const pct = Math.round(it.percent * 10) / 10;
  const bar = el("div", {
    class: "bar" + (it.phase === "Completed" ? " done" : it.failed ? " failed" : ""),
    role: "progressbar", "aria-label": "Progress of " + what,
    "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": pct, "aria-valuetext": pct + " %",
  }, el("span", { style: null }));
  bar.firstChild.style.width = pct + "%";
  const facts = el("dl", { class: "facts" });
  if (it.kind === "PVC") {
    facts.append(
      fact("Progress", pct + " % · " + bytes(it.bytesDone) + " of " + bytes(it.bytesTotal)),
      fact("Files", (it.filesSent || 0) + " sent of " + (it.files || 0)),
      fact("Rate", it.rate ? bytes(it.rate) + "/s" : "–"),
      fact("Time left", duration(it.eta)),
      fact("Attempts", String(it.attempts || 0)),
      fact("Endpoint", it.endpoint || "–"),
      fact("Target PVC", it.target || "–"),
      fact("Last success", it.lastSuccess ? when(it.lastSuccess, now) + " · " + (it.lastType || "") + " moved " + bytes(it.lastBytesSent) + ", " + (it.lastFilesSent || 0) + " files" : "never"),
    );
    if (it.verified) {
      facts.append(fact("Verified", it.verified + (it.differ ? ": " + it.differ.join(", ") : "") + (it.verifiedBytes ? " · " + bytes(it.verifiedBytes) + " compared" : "")));
    }
  } else {
    facts.append(
      fact("Images", (it.imagesDone || 0) + " of " + (it.images || 0)),
      fact("Blobs sent", String(it.blobsSent || 0)),
      fact("Blobs skipped", String(it.blobsSkipped || 0)),
      fact("Target", it.target || "–"),
      fact("Last success", when(it.lastSuccess, now)),
    );
  }
  const art = el("article", { class: "item", "aria-label": what, "data-kind": it.kind, "data-name": it.namespace + "/" + it.name },
    el("header", {},
      el("h4", { text: what }),
      el("span", { class: "phase " + phaseClass(it.phase), text: it.phase }),
      cancelAllowed && it.canCancel ? el("button", { type: "button", "aria-label": "Cancel the " + (it.kind === "PVC" ? "transfer" : "image copy") + " of " + what, "data-cancel": JSON.stringify({ kind: it.kind, namespace: it.namespace, name: it.name, id: it.id }) }, "Cancel") : null,
    ),
    bar, facts);
  if (it.message && (it.failed || it.phase !== "Completed")) {
    const box = el("div", { class: it.failed ? "failure" : "muted" }, el("p", { class: it.failed ? "msg" : "", text: it.message }));
    if (it.fix) box.append(el("p", { class: "fix" }, el("strong", { text: "Fix: " }), ...prose(it.fix)));
    art.append(box);
  }
  if (it.events && it.events.length) {
    const ul = el("ul", { class: "events" });
    for (const e of it.events) {
      ul.append(el("li", { class: e.type === "Warning" ? "warning" : "" },
        el("strong", { text: e.reason }), " " + e.message + " — " + when(e.time, now)));
    }
    art.append(el("details", {}, el("summary", { text: "Events (" + it.events.length + ")" }), ul));
  }
  return art;
}

function renderBackup(b, now) {
  const sec = el("section", { class: "backup", "aria-label": "Backup " + b.name, "data-backup": b.name },
    el("header", {},
      el("h3", { text: b.name }),
      el("span", { class: "muted", text: b.type }),
      el("span", { class: "phase " + phaseClass(b.phase), text: b.phase }),
      b.time && new Date(b.time).getFullYear() > 1 ? el("span", { class: "muted", text: when(b.time, now) }) : null,
      b.seen ? null : el("span", { class: "muted", text: "(Backup not readable: phase from its items)" }),
    ));
  if (b.message) {
    const box = el("div", { class: "failure" }, el("p", { class: "msg", text: b.message }));
    if (b.fix) box.append(el("p", { class: "fix" }, el("strong", { text: "Fix: " }), ...prose(b.fix)));
    sec.append(box);
  }
  for (const it of b.items || []) sec.append(renderItem(it, now));
  return sec;
}

function render(page) {
  const now = new Date(page.generated);
  cancelAllowed = !!page.allowCancel;
  const notices = document.getElementById("notices");
  notices.replaceChildren(...(page.notices || []).map((n) => el("p", { class: "notice", text: n })));
  const main = document.getElementById("groups");
  const open = new Set([...main.querySelectorAll("details[open]")].map((d) => d.closest("[data-name]")?.dataset.name));
  const groups = page.groups || [];
  if (!groups.length) {
    main.replaceChildren(el("p", { class: "muted", text: "No ferry migration backups or transfers visible." }));
  } else {
    main.replaceChildren(...groups.map((g) => {
      const title = (g.namespace === "*" ? "All namespaces" : "Namespace " + g.namespace) + (g.schedule ? " · schedule " + g.schedule : "");
      return el("section", { class: "group", "aria-label": title }, el("h2", { text: title }), ...g.backups.map((b) => renderBackup(b, now)));
    }));
  }
  for (const d of main.querySelectorAll("details")) {
    if (open.has(d.closest("[data-name]")?.dataset.name)) d.open = true;
  }
  document.getElementById("live").textContent = "Live · updated " + now.toLocaleTimeString();
}

document.addEventListener("click", async (ev) => {
  const b = ev.target.closest("button[data-cancel]");
  if (!b) return;
  const req = JSON.parse(b.dataset.cancel);
  if (!confirm("Cancel the " + (req.kind === "PVC" ? "transfer" : "image copy") + " of " + req.namespace + "/" + req.name + "?")) return;
  const out = document.getElementById("action");
  try {
    const r = await fetch("api/cancel", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(req) });
    out.textContent = r.ok ? "Cancel requested for " + req.namespace + "/" + req.name + "." : "Cancel refused: " + (await r.text());
  } catch (e) {
    out.textContent = "Cancel failed: " + e;
  }
});

function connect() {
  const es = new EventSource("api/events");
  es.onmessage = (m) => render(JSON.parse(m.data));
  es.onerror = () => { document.getElementById("live").textContent = "Disconnected · retrying…"; };
}
connect();

// kycgate console: a small page over the public API, no framework, no third-party code.
// The credential stays in this tab's sessionStorage and is sent as a Bearer header; the page
// itself carries no data, so serving it unauthenticated reveals nothing.
"use strict";

// Errors are collected where a test (or a curious operator) can read them.
window.__consoleErrors = [];
window.addEventListener("error", (e) => window.__consoleErrors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => window.__consoleErrors.push(String(e.reason)));
document.addEventListener("securitypolicyviolation", (e) => window.__consoleErrors.push("CSP: " + e.violatedDirective));

const $ = (id) => document.getElementById(id);
const POLL_MS = 400;
const TERMINAL = new Set(["SUCCESS", "FAILURE"]);

function credential() {
  return sessionStorage.getItem("kycgate.credential") || "";
}

function authHeaders() {
  const c = credential();
  return c ? { Authorization: "Bearer " + c } : {};
}

function text(el, value) {
  el.textContent = value == null ? "" : String(value);
}

function cell(row, value, header) {
  const td = document.createElement(header ? "th" : "td");
  if (header) td.scope = "row";
  text(td, value);
  row.appendChild(td);
  return td;
}

function setAuthState() {
  text($("auth-state"), credential() ? "Credential set for this tab" : "Not signed in");
}

function showTab(name) {
  for (const tab of document.querySelectorAll(".tab")) {
    const on = tab.getAttribute("aria-controls") === name;
    tab.setAttribute("aria-selected", on ? "true" : "false");
    $(tab.getAttribute("aria-controls")).hidden = !on;
  }
  if (name === "routing") loadRouting();
}

// ---- Try a check -------------------------------------------------------------------------

let seen = [];

function addTimeline(status) {
  const last = seen[seen.length - 1];
  if (last && last.status === status) return;
  const at = performance.now();
  seen.push({ status, at });
  const li = document.createElement("li");
  const since = ((at - seen[0].at) / 1000).toFixed(1);
  text(li, status + " at +" + since + " s");
  li.className = "st-" + status.toLowerCase();
  $("timeline").appendChild(li);
}

async function runCheck(event) {
  event.preventDefault();
  text($("form-error"), "");
  $("result").hidden = true;
  if (!credential()) {
    text($("form-error"), "Set an API key or access token first.");
    $("api-key").focus();
    return;
  }
  const selfie = $("selfie").files[0];
  const passport = $("passport").files[0];
  const body = new FormData();
  body.append("selfie_image", selfie);
  body.append("passport_image", passport);
  body.append("extend_data", $("extend").checked ? "true" : "false");
  $("run").disabled = true;
  try {
    const r = await fetch("/api/v3/services/kyc_passport/", { method: "POST", headers: authHeaders(), body });
    const answer = await r.json().catch(() => ({}));
    if (!r.ok) {
      text($("form-error"), describeError(r.status, answer));
      return;
    }
    seen = [];
    $("timeline").replaceChildren();
    $("progress").hidden = false;
    text($("task-id"), answer.id);
    await poll(answer.id, selfie, passport);
  } catch (e) {
    text($("form-error"), "The gateway could not be reached: " + e);
  } finally {
    $("run").disabled = false;
  }
}

function describeError(status, body) {
  if (body && typeof body.detail === "string") return status + ": " + body.detail;
  if (body && typeof body === "object") {
    return status + ": " + Object.entries(body).map(([k, v]) => k + ": " + [].concat(v).join(" ")).join("; ");
  }
  return "HTTP " + status;
}

async function poll(id, selfie, passport) {
  for (;;) {
    const r = await fetch("/api/v3/services/task/?id=" + encodeURIComponent(id), { headers: authHeaders() });
    const task = await r.json().catch(() => ({}));
    if (!r.ok) {
      text($("form-error"), describeError(r.status, task));
      return;
    }
    text($("status"), task.status);
    addTimeline(task.status);
    if (TERMINAL.has(task.status)) {
      await render(task, selfie, passport);
      return;
    }
    await new Promise((done) => setTimeout(done, POLL_MS));
  }
}

function pct(x) {
  return typeof x === "number" ? x.toFixed(3) : "n/a";
}

async function render(task, selfie, passport) {
  const result = task.result || {};
  const data = result.data || {};
  const details = data.details || {};
  const issues = data.issues || {};
  const verdict = [];
  for (const key of ["liveness", "compare"]) {
    if (key in data) verdict.push(key + ": " + (data[key] ? "passed" : "not passed"));
  }
  if (data.document) verdict.push("document: " + (data.document.is_valid ? "check digits hold" : "check digits fail"));
  for (const [sub, codes] of Object.entries(issues)) {
    for (const [code, message] of Object.entries(codes)) verdict.push(sub + " issue " + code + " (" + message + ")");
  }
  text($("verdict"), "Result status " + result.status + " — " + verdict.join("; "));

  $("selfie-view").src = URL.createObjectURL(selfie);
  $("passport-view").src = URL.createObjectURL(passport);
  const live = (details.liveness || {}).data || {};
  text($("liveness-line"), "Liveness score " + pct(live.score) + " (threshold " + pct(live.threshold) + ", " + (live.provider || "no provider") + ")");
  const cmp = (details.compare || {}).data || {};
  text($("compare-line"), "Compare score " + pct(cmp.score) + " (threshold " + pct(cmp.threshold) + ", " + (cmp.provider || "no provider") + ")");

  const portrait = $("portrait-view");
  portrait.removeAttribute("src");
  const doc = data.document || {};
  if (doc.portrait) {
    const r = await fetch("/media/" + doc.portrait, { headers: authHeaders() });
    if (r.ok) portrait.src = URL.createObjectURL(await r.blob());
  }

  const body = $("mrz").tBodies[0];
  body.replaceChildren();
  const fields = ["documentCode", "documentNumber", "lastName", "firstName", "nationality", "issuingState",
    "dateOfBirth", "age", "sex", "dateOfExpiry", "is_expired", "is_valid", "personalNumber"];
  for (const f of fields) {
    if (!(f in doc)) continue;
    const row = body.insertRow();
    cell(row, f, true);
    cell(row, doc[f]);
  }
  if (doc.mrz && Array.isArray(doc.mrz.lines)) {
    const row = body.insertRow();
    cell(row, "MRZ lines", true);
    const td = cell(row, "");
    td.className = "mono";
    text(td, doc.mrz.lines.join("\n"));
  }

  renderAttempts(data.providers || {});
  text($("raw"), JSON.stringify(task, null, 2));
  $("result").hidden = false;
}

function renderAttempts(providers) {
  const wrap = $("attempts");
  wrap.replaceChildren();
  const all = Object.values(providers).flat();
  const longest = Math.max(1, ...all.map((a) => Number(a.latency_ms) || 0));
  for (const [sub, attempts] of Object.entries(providers)) {
    const table = document.createElement("table");
    table.className = "fields attempts";
    const caption = table.createCaption();
    text(caption, sub);
    const head = table.createTHead().insertRow();
    for (const h of ["provider", "attempt", "outcome", "latency", "reason"]) {
      const th = document.createElement("th");
      th.scope = "col";
      text(th, h);
      head.appendChild(th);
    }
    const tbody = table.createTBody();
    for (const a of attempts) {
      const row = tbody.insertRow();
      row.className = "outcome-" + a.outcome;
      cell(row, a.provider);
      cell(row, a.attempt);
      cell(row, a.outcome);
      const lat = cell(row, "");
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = Math.max(2, Math.round((Number(a.latency_ms) || 0) / longest * 100)) + "%";
      const label = document.createElement("span");
      text(label, (Number(a.latency_ms) || 0) + " ms");
      lat.append(bar, label);
      cell(row, a.reason || "");
    }
    wrap.appendChild(table);
  }
}

// ---- Routing -----------------------------------------------------------------------------

async function loadRouting() {
  try {
    const r = await fetch("/readyz", { headers: authHeaders() });
    const ready = await r.json();
    text($("ready-line"), (ready.ready ? "Ready" : "Not ready") + " — task store: " + ready.store);
    const body = $("circuits").tBodies[0];
    body.replaceChildren();
    for (const [sub, state] of Object.entries(ready.sub_calls || {})) {
      const row = body.insertRow();
      cell(row, sub, true);
      cell(row, state);
      const circuits = (ready.circuits || {})[sub] || {};
      cell(row, Object.entries(circuits).map(([p, s]) => p + " (" + s + ")").join(", "));
    }
  } catch (e) {
    text($("ready-line"), "Readiness could not be read: " + e);
  }
}

// ---- Wiring ------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("auth").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem("kycgate.credential", $("api-key").value.trim());
    $("api-key").value = "";
    setAuthState();
  });
  $("check").addEventListener("submit", runCheck);
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => showTab(tab.getAttribute("aria-controls")));
  }
  $("refresh-routing").addEventListener("click", loadRouting);
  setAuthState();
});

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

function cell(row, value, header, label) {
  const td = document.createElement(header ? "th" : "td");
  if (header) td.scope = "row";
  if (label) td.dataset.label = label;
  text(td, value);
  row.appendChild(td);
  return td;
}

function button(label, className, onClick, name) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  text(b, label);
  if (name) b.setAttribute("aria-label", name);
  b.addEventListener("click", onClick);
  return b;
}

// A table with a caption and column headers (labels repeat on narrow screens).
function table(caption, headers) {
  const t = document.createElement("table");
  t.className = "fields stack";
  text(t.createCaption(), caption);
  const head = t.createTHead().insertRow();
  for (const h of headers) {
    const th = document.createElement("th");
    th.scope = "col";
    text(th, h);
    head.appendChild(th);
  }
  t.createTBody();
  return t;
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
  if (name === "tasks") loadTasks(false);
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
      cell(row, state, false, "Readiness");
      const circuits = (ready.circuits || {})[sub] || {};
      cell(row, Object.entries(circuits).map(([p, s]) => p + " (" + s + ")").join(", "), false, "Providers");
    }
  } catch (e) {
    text($("ready-line"), "Readiness could not be read: " + e);
  }
  try {
    await loadAdminRouting();
  } catch (e) {
    text($("admin-note"), "The routing details could not be read: " + e);
  }
}

// ---- Operator's routing view (GET /api/v3/admin/routing/) ---------------------------------

function ms(x) {
  return typeof x === "number" ? x.toFixed(1) + " ms" : "–";
}

function describeChain(sub) {
  const parts = ["chain: " + sub.chain.map((c) => c.provider + " (timeout " + c.timeout_ms + " ms, " +
    c.retry.max_attempts + " attempts)").join(" → ")];
  if (sub.split.length) parts.push("split: " + sub.split.map((s) => s.provider + " " + s.weight).join(" / "));
  for (const r of sub.rules) {
    const when = Object.entries(r.when).map(([f, v]) => f + " in " + v.join(",")).join(" and ");
    parts.push("rule: when " + when + " → " + r.order.join(", ") + (r.only ? " only" : ""));
  }
  if (sub.hedge) {
    parts.push("hedge: " + (sub.hedge.delay_ms != null ? "after " + sub.hedge.delay_ms + " ms"
      : "at p" + Math.round(sub.hedge.percentile * 100) + " of the first provider's latency"));
  }
  if (sub.consensus) parts.push("consensus (" + sub.consensus.policy + "): " + sub.consensus.providers.join(", "));
  return parts;
}

async function loadAdminRouting() {
  const wrap = $("admin-routing");
  wrap.replaceChildren();
  text($("admin-note"), "");
  if (!credential()) {
    text($("admin-note"), "Set an operator's API key to see chains, latency and spend.");
    return;
  }
  const r = await fetch("/api/v3/admin/routing/", { headers: authHeaders() });
  const body = await r.json().catch(() => ({}));
  if (r.status === 403) {
    text($("admin-note"), "Chains, latency and spend are shown to operators only: this credential is not an operator's API key.");
    return;
  }
  if (!r.ok) {
    text($("admin-note"), describeError(r.status, body));
    return;
  }
  text($("admin-note"), "Latency and error rate: each provider's last 256 attempts on this instance.");
  for (const sub of body.sub_calls || []) {
    const h = document.createElement("h4");
    text(h, sub.sub_call);
    wrap.appendChild(h);
    for (const line of describeChain(sub)) {
      const p = document.createElement("p");
      p.className = "policy";
      text(p, line);
      wrap.appendChild(p);
    }
    const t = table(sub.sub_call + ": providers now",
      ["Provider", "Circuit", "Attempts", "p50", "p95", "p99", "Errors", "Spend today"]);
    for (const p of sub.providers) {
      const row = t.tBodies[0].insertRow();
      cell(row, p.provider, true);
      cell(row, p.circuit, false, "Circuit");
      cell(row, p.recent.calls, false, "Attempts");
      cell(row, ms(p.recent.p50_ms), false, "p50");
      cell(row, ms(p.recent.p95_ms), false, "p95");
      cell(row, ms(p.recent.p99_ms), false, "p99");
      cell(row, p.recent.error_rate == null ? "–" : (p.recent.error_rate * 100).toFixed(1) + "%", false, "Errors");
      const spend = p.spend.daily_budget == null ? "no budget (" + p.spend.cost_per_call + " per call)"
        : p.spend.spent_today.toFixed(2) + " of " + p.spend.daily_budget.toFixed(2);
      cell(row, spend, false, "Spend today");
    }
    wrap.appendChild(t);
  }
}

// ---- Tasks -------------------------------------------------------------------------------

let nextCursor = null;
let pendingDelete = null;

function when(iso) {
  return typeof iso === "string" ? iso.replace("T", " ").replace(/\.\d+Z$/, "") : "";
}

async function loadTasks(more) {
  text($("tasks-error"), "");
  if (!credential()) {
    text($("tasks-error"), "Set an API key or access token first.");
    return;
  }
  const params = new URLSearchParams();
  const status = $("filter-status").value;
  const service = $("filter-service").value;
  if (status) params.set("status", status);
  if (service) params.set("service", service);
  params.set("limit", $("task-table").dataset.pageSize || "20");
  if (more && nextCursor) params.set("cursor", nextCursor);
  try {
    const r = await fetch("/api/v3/services/tasks/?" + params, { headers: authHeaders() });
    const page = await r.json().catch(() => ({}));
    if (!r.ok) {
      text($("tasks-error"), describeError(r.status, page));
      return;
    }
    const body = $("task-table").tBodies[0];
    if (!more) body.replaceChildren();
    for (const task of page.results || []) addTaskRow(body, task);
    nextCursor = page.next;
    $("load-more").hidden = !nextCursor;
    countTasks();
  } catch (e) {
    text($("tasks-error"), "The gateway could not be reached: " + e);
  }
}

function countTasks() {
  const n = $("task-table").tBodies[0].rows.length;
  text($("tasks-count"), n === 0 ? "No tasks match." : n + " task" + (n === 1 ? "" : "s") + " shown" + (nextCursor ? "; more to load." : "."));
}

function addTaskRow(body, task) {
  const row = body.insertRow();
  row.dataset.id = task.id;
  cell(row, when(task.created_at), false, "Created");
  cell(row, task.service, false, "Service");
  cell(row, task.status + (task.finished_at ? " (" + when(task.finished_at) + ")" : ""), false, "Status");
  const id = cell(row, task.id, false, "Task");
  id.className = "mono";
  const actions = cell(row, "", false);
  actions.className = "actions";
  actions.append(
    button("View", "view", () => viewTask(task.id), "View task " + task.id),
    button("Delete", "delete danger", () => askDelete(task.id), "Delete task " + task.id),
  );
}

async function viewTask(id) {
  const r = await fetch("/api/v3/services/task/?id=" + encodeURIComponent(id), { headers: authHeaders() });
  const task = await r.json().catch(() => ({}));
  if (!r.ok) {
    text($("tasks-error"), describeError(r.status, task));
    return;
  }
  text($("detail-id"), id);
  const result = task.result;
  text($("detail-summary"), task.status + (result ? " — result status " + result.status : " — no result yet"));
  text($("detail-json"), JSON.stringify(task, null, 2));
  $("task-detail").hidden = false;
  $("detail-title").focus();
}

function askDelete(id) {
  pendingDelete = id;
  text($("confirm-id"), id);
  $("confirm-delete").showModal();
  $("confirm-cancel").focus();
}

async function confirmDelete() {
  const id = pendingDelete;
  pendingDelete = null;
  $("confirm-delete").close();
  if (!id) return;
  const r = await fetch("/api/v3/services/task/?id=" + encodeURIComponent(id), { method: "DELETE", headers: authHeaders() });
  if (r.status !== 204 && r.status !== 404) {
    text($("tasks-error"), describeError(r.status, await r.json().catch(() => ({}))));
    return;
  }
  const row = [...$("task-table").tBodies[0].rows].find((tr) => tr.dataset.id === id);
  if (row) row.remove();
  if ($("detail-id").textContent === id) $("task-detail").hidden = true;
  countTasks();
  $("apply-filters").focus();
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
  $("task-filters").addEventListener("submit", (e) => {
    e.preventDefault();
    loadTasks(false);
  });
  $("load-more").addEventListener("click", () => loadTasks(true));
  $("close-detail").addEventListener("click", () => {
    $("task-detail").hidden = true;
    $("apply-filters").focus();
  });
  $("confirm-cancel").addEventListener("click", () => {
    pendingDelete = null;
    $("confirm-delete").close();
  });
  $("confirm-ok").addEventListener("click", confirmDelete);
  setAuthState();
});

// drydock dashboard: a small hash-routed page over the management API.
// Every number on screen comes from /api/v1; nothing is computed here
// beyond sums for the overview cards.
"use strict";

const API = "/api/v1";
const SEVERITIES = ["critical", "high", "medium", "low", "unknown"];

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// Who is signed in (GET /auth/session), and the session's CSRF token. The
// token lives only in memory: after a reload it is read again from
// /auth/session, and it goes out as X-CSRF-Token on every write.
let session = null;
let csrf = null;
// Browsing without signing in (only public repositories show).
let anonymous = false;

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// Bumped by every navigation (a route, the sign-in form). A read that
// answers after the user has moved on is dropped, so a slow response
// never replaces the page the user is now on.
let navigation = 0;
class Stale extends Error {}

async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  const r = await fetch(API + path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = r.status === 204 ? null : await r.json().catch(() => null);
  if (!r.ok) {
    if (r.status === 401 && path !== "/auth/login" && !anonymous) showLogin("Your session has ended; sign in again.");
    throw new ApiError(r.status, (data && data.error && data.error.message) || `${r.status} ${r.statusText}`);
  }
  return data;
}

const get = async path => {
  const started = navigation;
  const data = await request("GET", path);
  if (started !== navigation) throw new Stale("navigated away");
  return data;
};
const post = (path, body) => request("POST", path, body === undefined ? {} : body);
const put = (path, body) => request("PUT", path, body);
const del = path => request("DELETE", path);

function sev(s) {
  const k = String(s || "unknown").toLowerCase();
  return `<span class="sev ${esc(k)}">${esc(k)}</span>`;
}

function health(h) {
  if (!h) return `<span class="muted">not assessed</span>`;
  return `<span class="health ${h.healthy ? "healthy" : "unhealthy"}" title="${esc(h.reason)}">${h.healthy ? "healthy" : "unhealthy"}</span>`;
}

function short(d) {
  return d ? esc(d.replace(/^sha256:/, "").slice(0, 12)) : "";
}

function imageLink(d) {
  return `<a class="mono" href="#/image/${encodeURIComponent(d)}">${short(d)}</a>`;
}

function counts(s) {
  if (!s) return "";
  return SEVERITIES.filter(k => s[k]).map(k => `${sev(k)} ${s[k]}`).join(" ") || `<span class="muted">none</span>`;
}

function when(t) {
  return t ? esc(t.replace("T", " ").replace(/\.\d+/, "")) : "";
}

const view = () => document.getElementById("view");

async function overview() {
  const [images, recs, db, queue] = await Promise.all([
    get("/images"), get("/recommendations?limit=10"), get("/vulndb"), get("/queue"),
  ]);
  const assessed = images.filter(i => i.health);
  const unhealthy = assessed.filter(i => !i.health.healthy);
  const totals = {};
  for (const i of images) for (const k of SEVERITIES) totals[k] = (totals[k] || 0) + ((i.summary && i.summary[k]) || 0);
  const pending = Object.entries(queue.counts || {}).filter(([k]) => ["queued", "cataloging", "matching"].includes(k)).reduce((a, [, n]) => a + n, 0);
  const card = (label, value, cls = "") => `<div class="card"><div class="label">${label}</div><div class="value ${cls}">${value}</div></div>`;
  view().innerHTML = `
    <div class="cards">
      ${card("Images", images.length)}
      ${card("Healthy", assessed.length - unhealthy.length, "health healthy")}
      ${card("Unhealthy", unhealthy.length, unhealthy.length ? "health unhealthy" : "")}
      ${card("Critical findings", totals.critical || 0)}
      ${card("High findings", totals.high || 0)}
      ${card("Scans pending", pending)}
    </div>
    <section><h2>Vulnerability database</h2>
      ${db.available
        ? `<p>Version <code>${esc(db.version)}</code>. Images pulled or pushed in the last ${esc(db.rescan_window_days)} days are re-assessed whenever it changes.</p>`
        : `<p class="error">No vulnerability database is installed: run <code>drydock db update</code> or <code>drydock db import PATH</code>.</p>`}
    </section>
    <section><h2>Images that need attention (worst first)</h2>${imageTable(recs.by_image.filter(i => i.health && !i.health.healthy))}</section>
    <section><h2>Top vulnerabilities</h2>${vulnTable(recs.by_vulnerability)}</section>`;
}

function imageTable(list) {
  if (!list.length) return `<p class="muted">Nothing here.</p>`;
  return `<table><tr><th>Image</th><th>Repository</th><th>Tags</th><th>Platform</th><th>Health</th><th>Findings</th><th>Assessed</th></tr>
    ${list.map(i => `<tr><td>${imageLink(i.digest)}</td><td>${esc(i.repository)}</td><td>${(i.tags || []).map(t => `<span class="pill">${esc(t)}</span>`).join("")}</td>
      <td>${esc(i.platform || i.kind)}</td><td>${health(i.health)} ${i.stale ? `<span class="muted">(stale)</span>` : ""}</td>
      <td>${counts(i.summary)}</td><td>${when(i.assessed_at) || (i.kind === "index" ? `<span class="muted">per platform</span>` : esc(i.status))}</td></tr>`).join("")}</table>`;
}

function vulnTable(list) {
  if (!list.length) return `<p class="muted">No vulnerabilities found.</p>`;
  return `<table><tr><th>Vulnerability</th><th>Severity</th><th>Fix</th><th>Affected images</th><th>Summary</th></tr>
    ${list.map(v => `<tr><td><b>${esc(v.id)}</b><br><span class="muted">${(v.aliases || []).map(esc).join(", ")}</span></td><td>${sev(v.severity)}</td>
      <td>${Object.entries(v.fix || {}).map(([p, vs]) => `${esc(p)} → ${vs.map(esc).join(", ") || "<span class='muted'>no fix yet</span>"}`).join("<br>") || "<span class='muted'>no fix yet</span>"}</td>
      <td>${v.affected_images.map(a => `${imageLink(a.digest)} <span class="muted">${esc(a.repository)}</span>`).join("<br>")}</td>
      <td>${esc(v.summary)}</td></tr>`).join("")}</table>`;
}

async function images() {
  const list = await get("/images");
  view().innerHTML = `<section><h2>All images</h2>${imageTable(list)}</section>`;
}

async function vulnerabilities() {
  const recs = await get("/recommendations?limit=1000");
  view().innerHTML = `<section><h2>Vulnerabilities across the registry</h2>${vulnTable(recs.by_vulnerability)}</section>`;
}

async function queue() {
  const q = await get("/queue");
  view().innerHTML = `<section><h2>Scan queue</h2>
    <p>${Object.entries(q.counts || {}).map(([k, n]) => `<span class="pill">${esc(k)}: ${n}</span>`).join(" ")}</p>
    ${q.pending.length ? `<table><tr><th>Image</th><th>Repository</th><th>Status</th><th>Queued</th><th>Attempts</th></tr>
      ${q.pending.map(e => `<tr><td>${imageLink(e.digest)}</td><td>${esc(e.repository)}</td><td>${esc(e.status)}</td><td>${when(e.queued_at)}</td><td>${e.attempts}</td></tr>`).join("")}</table>`
      : `<p class="muted">Nothing waiting.</p>`}</section>`;
}

async function image(digest, params) {
  const qs = new URLSearchParams(params);
  const img = await get(`/images/${encodeURIComponent(digest)}?${qs}`);
  const rem = img.remediation;
  const filterSelect = (name, options) => `<label>${name} <select data-filter="${name}">
      <option value="">any</option>${options.map(o => `<option ${params[name] === o ? "selected" : ""}>${o}</option>`).join("")}</select></label>`;
  view().innerHTML = `
    <section><h2>${esc((img.tags || [])[0] || img.digest)}</h2>
      <p class="mono">${esc(img.digest)}</p>
      <p>${health(img.health)} — ${esc(img.health ? img.health.reason : img.status)} ${img.stale ? `<span class="muted">(stale: made with an older database)</span>` : ""}</p>
      <p class="muted">${esc(img.kind)} ${esc(img.platform || "")} · status ${esc(img.status)} ${img.error ? `<span class="error">${esc(img.error)}</span>` : ""}
        · assessed ${when(img.assessed_at)} · database ${esc(img.db_version || "")}</p>
      <p>${counts(img.summary)} ${img.summary ? `<span class="muted">· ${img.summary.fixable} fixable · ${img.summary.exempt} exempt</span>` : ""}</p>
    </section>
    ${img.children && img.children.length ? `<section><h2>Platforms</h2><table><tr><th>Image</th><th>Platform</th><th>Health</th><th>Findings</th></tr>
      ${img.children.map(c => `<tr><td>${imageLink(c.digest)}</td><td>${esc(c.platform)}</td><td>${health(c.health)}</td><td>${counts(c.summary)}</td></tr>`).join("")}</table></section>` : ""}
    ${rem ? `<section><h2>Remediation</h2>
      ${rem.base_image ? `<div class="advice">${esc(rem.base_image.advice)}</div>` : ""}
      ${rem.better_alternative ? `<div class="advice">A better starting point in this registry: ${esc(rem.better_alternative.repository)} ${imageLink(rem.better_alternative.digest)} with ${rem.better_alternative.findings} findings.</div>` : ""}
      ${rem.upgrade_plan.length ? `<table><tr><th>Package</th><th>Installed</th><th>Upgrade to</th><th>Clears</th></tr>
        ${rem.upgrade_plan.map(u => `<tr><td>${esc(u.package)} <span class="muted">${esc(u.ecosystem)}</span></td><td>${esc(u.installed_version)}</td><td><b>${esc(u.upgrade_to)}</b></td>
          <td>${sev(u.highest_severity)} ${u.clears.length} finding${u.clears.length === 1 ? "" : "s"}</td></tr>`).join("")}</table>`
        : `<p class="muted">No upgrade clears a finding.</p>`}
      <p class="muted">${rem.findings_cleared} findings cleared by the plan; ${rem.findings_without_fix} have no fix yet.</p></section>` : ""}
    ${diffSection(img.diffs)}
    <section><h2>Vulnerabilities</h2>
      <div class="filters">${filterSelect("severity", SEVERITIES)}${filterSelect("status", ["fixed", "unfixed", "wont_fix"])}
        ${filterSelect("fixable", ["true", "false"])}${filterSelect("exempt", ["true", "false"])}</div>
      ${img.findings.length ? `<table><tr><th>Vulnerability</th><th>Severity</th><th>Package</th><th>Installed</th><th>Fixed in</th><th>Status</th><th>Summary</th></tr>
        ${img.findings.map(f => `<tr><td><b>${esc(f.id)}</b><br><span class="muted">${(f.aliases || []).map(esc).join(", ")}</span></td>
          <td>${sev(f.severity)}${f.cvss && f.cvss.score != null ? `<br><span class="muted">CVSS ${esc(f.cvss.score)}</span>` : ""}</td>
          <td>${esc(f.package)} <span class="muted">${esc(f.ecosystem)}</span></td><td>${esc(f.installed_version)}</td>
          <td>${f.fixed_version ? esc(f.fixed_version) : `<span class="muted">${f.status === "wont_fix" ? "won't fix" : "no fix yet"}</span>`}</td><td>${esc(f.status)}${f.exempt ? exemptPill(f, img.exemptions) : ""}</td>
          <td>${esc(f.summary)}</td></tr>`).join("")}</table>` : `<p class="muted">No findings match.</p>`}
    </section>`;
  for (const sel of view().querySelectorAll("select[data-filter]")) {
    sel.addEventListener("change", () => {
      const next = { ...params, [sel.dataset.filter]: sel.value };
      for (const k of Object.keys(next)) if (!next[k]) delete next[k];
      location.hash = `#/image/${encodeURIComponent(digest)}?${new URLSearchParams(next)}`;
    });
  }
}

// An exempt finding: who exempted it and why (from the image's exemptions).
function exemptPill(f, exemptions) {
  const e = (exemptions || []).find(x => x.id === f.exempted_by);
  if (!e) return ` <span class="pill" title="${esc(f.exempted_by)}">exempt</span>`;
  const title = `Exempted by ${e.author}: ${e.reason}${e.expires_at ? ` (until ${e.expires_at})` : ""}`;
  return ` <span class="pill" title="${esc(title)}">exempt · ${esc(e.author)}</span>`;
}

function diffSection(diffs) {
  if (!diffs) return "";
  const rows = [];
  const add = (label, d) => {
    if (!d) return;
    rows.push(`<tr><td>${esc(label)}</td><td>${(d.new || []).map(esc).join(", ") || "<span class='muted'>none</span>"}</td>
      <td>${(d.resolved || []).map(esc).join(", ") || "<span class='muted'>none</span>"}</td></tr>`);
  };
  add(`since the assessment of ${when(diffs.previous_assessment && diffs.previous_assessment.since)}`, diffs.previous_assessment);
  for (const d of diffs.previous_tag_digest || []) add(`since ${d.repository || ""}:${d.tag || ""} was ${d.since}`, d);
  if (!rows.length) return "";
  return `<section><h2>What changed</h2><table><tr><th>Compared with</th><th>New</th><th>Resolved</th></tr>${rows.join("")}</table></section>`;
}

// ---- administration (access control on, administrators only) ----

function form(id, fields, submit) {
  return `<form id="${id}" class="form">${fields.map(([name, label, attrs]) =>
    `<label for="${id}-${name}">${label}</label><input id="${id}-${name}" name="${name}" ${attrs || ""}>`).join("")}
    <button type="submit">${submit}</button><p class="error" role="alert"></p></form>`;
}

// Run `action` on submit; show its error under the form, or re-render.
function onSubmit(id, action, after) {
  const f = document.getElementById(id);
  f.addEventListener("submit", async ev => {
    ev.preventDefault();
    const values = Object.fromEntries(new FormData(f));
    try {
      const result = await action(values);
      await (after ? after(result) : route());
    } catch (e) {
      f.querySelector(".error").textContent = e.message;
    }
  });
}

// Buttons carrying data-act run `actions[act](data-arg)`, then re-render.
function onActions(actions) {
  for (const b of view().querySelectorAll("button[data-act]")) {
    b.addEventListener("click", async () => {
      if (b.dataset.confirm && !confirm(b.dataset.confirm)) return;
      try {
        await actions[b.dataset.act](b.dataset.arg);
        await route();
      } catch (e) {
        alert(e.message);
      }
    });
  }
}

const list = s => String(s || "").split(",").map(x => x.trim()).filter(Boolean);
const isoOrNull = s => s ? new Date(s).toISOString() : null;

async function users() {
  const all = await get("/users");
  view().innerHTML = `<section><h2>Users</h2>
    <table><tr><th>Name</th><th>Groups</th><th>Administrator</th><th>Created</th><th></th></tr>
    ${all.map(u => `<tr><td>${esc(u.name)}</td><td>${u.groups.map(g => `<span class="pill">${esc(g)}</span>`).join("")}</td>
      <td>${u.admin ? "yes" : ""}</td><td>${when(u.created_at)}</td>
      <td><button data-act="groups" data-arg="${esc(u.name)}">Groups…</button>
        <button type="button" data-password="${esc(u.name)}">Password…</button>
        ${u.name === session.name ? "" : `<button data-act="remove" data-arg="${esc(u.name)}" data-confirm="Remove user ${esc(u.name)}?">Remove</button>`}</td></tr>`).join("")}</table></section>
    <section><h2>Add a user</h2>${form("add-user", [
      ["name", "Name", "required autocomplete=\"off\""],
      ["password", "Password (8 characters or more)", "type=\"password\" required minlength=\"8\" autocomplete=\"new-password\""],
      ["groups", "Groups (comma-separated)", ""]], "Add user")}</section>
    <section><h2>Set a password</h2><form id="set-password" class="form">
      <label for="set-password-name">User</label><select id="set-password-name" name="name">
        ${all.map(u => `<option ${u.name === session.name ? "selected" : ""}>${esc(u.name)}</option>`).join("")}</select>
      <label for="set-password-password">New password (8 characters or more)</label>
      <input id="set-password-password" name="password" type="password" required minlength="8" autocomplete="new-password">
      <button type="submit">Set password</button><p class="error" role="alert"></p></form>
      <p id="set-password-done" role="status"></p></section>`;
  onSubmit("add-user", v => post("/users", { name: v.name, password: v.password, groups: list(v.groups) }));
  // A password is typed into a masked field of this form, never into a
  // prompt() that shows it in clear.
  onSubmit("set-password", async v => {
    const r = await put(`/users/${encodeURIComponent(v.name)}/password`, { password: v.password });
    // Changing one's own password ends the session and starts a new one
    // with a new CSRF token: without it every later write would be refused.
    if (r && r.csrf) csrf = r.csrf;
    return v.name;
  }, async name => {
    await users();
    document.getElementById("set-password-done").textContent = `The password of ${name} was changed.`;
  });
  for (const b of view().querySelectorAll("button[data-password]")) {
    b.addEventListener("click", () => {
      document.getElementById("set-password-name").value = b.dataset.password;
      document.getElementById("set-password-password").focus();
    });
  }
  onActions({
    remove: name => del(`/users/${encodeURIComponent(name)}`),
    groups: async name => {
      const g = prompt(`Groups of ${name} (comma-separated):`, all.find(u => u.name === name).groups.join(", "));
      if (g !== null) await put(`/users/${encodeURIComponent(name)}/groups`, { groups: list(g) });
    },
  });
}

async function robots() {
  const all = await get("/robots");
  view().innerHTML = `<div id="secret"></div><section><h2>Robot accounts</h2>
    <table><tr><th>Sign in as</th><th>Description</th><th>Permissions</th><th>State</th><th>Expires</th><th></th></tr>
    ${all.map(r => `<tr><td class="mono">${esc(r.username)}</td><td>${esc(r.description)}</td>
      <td>${r.permissions.map(p => `<span class="pill">${esc(p.pattern)}: ${p.actions.map(esc).join(", ")}</span>`).join("")}</td>
      <td>${esc(r.state)}</td><td>${when(r.expires_at) || `<span class="muted">never</span>`}</td>
      <td>${r.state === "active" ? `<button data-act="revoke" data-arg="${esc(r.name)}" data-confirm="Revoke ${esc(r.username)}? Its logins and tokens stop working at once.">Revoke</button>` : ""}
        <button data-act="remove" data-arg="${esc(r.name)}" data-confirm="Delete ${esc(r.username)}?">Delete</button></td></tr>`).join("")}</table></section>
    <section><h2>Create a robot</h2>${form("add-robot", [
      ["name", "Name", "required autocomplete=\"off\""],
      ["description", "Description", ""],
      ["expires_at", "Expires (optional)", "type=\"datetime-local\""],
      ["pattern", "Repository pattern", "required placeholder=\"team-a/**\""],
      ["actions", "Actions (pull, push, delete)", "required value=\"pull\""]], "Create robot")}</section>`;
  onSubmit("add-robot", v => post("/robots", {
    name: v.name, description: v.description || null, expires_at: isoOrNull(v.expires_at),
    permissions: [{ pattern: v.pattern, actions: list(v.actions) }],
  }), async created => {
    await robots();
    // The secret is in this response only: shown once, kept nowhere.
    document.getElementById("secret").innerHTML = `<section class="secret" role="status"><h2>Secret of ${esc(created.username)}</h2>
      <p>Copy it now: it will not be shown again.</p><p><code>${esc(created.secret)}</code></p>
      <p class="muted">docker login &lt;this host&gt; -u '${esc(created.username)}'</p></section>`;
  });
  onActions({
    revoke: name => post(`/robots/${encodeURIComponent(name)}/revoke`),
    remove: name => del(`/robots/${encodeURIComponent(name)}`),
  });
}

async function bindings() {
  const all = await get("/bindings");
  const subject = s => s.kind === "anonymous" ? "anyone (anonymous)" : `${s.kind} ${s.name}`;
  view().innerHTML = `<section><h2>Bindings</h2>
    <p class="muted">Who may do what on which repositories. <code>*</code> stays within one path segment, <code>**</code> spans several; admin on <code>**</code> makes an administrator.</p>
    <table><tr><th>Subject</th><th>Repositories</th><th>Actions</th><th>Source</th><th></th></tr>
    ${all.map(b => `<tr><td>${esc(subject(b.subject))}</td><td class="mono">${esc(b.pattern)}</td><td>${b.actions.map(esc).join(", ")}</td>
      <td>${b.source === "config" ? "configuration file" : "added here"}</td>
      <td>${b.id ? `<button data-act="remove" data-arg="${esc(b.id)}" data-confirm="Remove this binding?">Remove</button>` : ""}</td></tr>`).join("")}</table></section>
    <section><h2>Add a binding</h2><form id="add-binding" class="form">
      <label for="add-binding-kind">Subject kind</label><select id="add-binding-kind" name="kind">
        <option>user</option><option>group</option><option>robot</option><option>anonymous</option></select>
      <label for="add-binding-name">Subject name</label><input id="add-binding-name" name="name" autocomplete="off">
      <label for="add-binding-pattern">Repository pattern</label><input id="add-binding-pattern" name="pattern" required placeholder="team-a/**">
      <fieldset><legend>Actions</legend>${["pull", "push", "delete", "admin"].map(a =>
        `<label><input type="checkbox" name="action-${a}" ${a === "pull" ? "checked" : ""}> ${a}</label>`).join(" ")}</fieldset>
      <button type="submit">Add binding</button><p class="error" role="alert"></p></form></section>`;
  onSubmit("add-binding", v => post("/bindings", {
    subject: v.kind === "anonymous" ? { kind: "anonymous" } : { kind: v.kind, name: v.name },
    pattern: v.pattern,
    actions: ["pull", "push", "delete", "admin"].filter(a => v[`action-${a}`]),
  }));
  onActions({ remove: id => del(`/bindings/${encodeURIComponent(id)}`) });
}

async function audit(params) {
  const keys = ["identity", "action", "repository", "outcome", "since", "until", "before"];
  const qs = new URLSearchParams();
  for (const k of keys) if (params[k]) qs.set(k, params[k]);
  const entries = await get("/audit?" + qs);
  const field = (name, label, attrs) => `<label for="audit-${name}">${label}</label>
    <input id="audit-${name}" name="${name}" value="${esc(params[name] || "")}" ${attrs || ""}>`;
  view().innerHTML = `<section><h2>Audit log</h2>
    <form id="audit-filter" class="filters">
      ${field("identity", "Identity")}${field("action", "Action", "placeholder=\"push, login, user.add…\"")}
      ${field("repository", "Target starts with")}
      <label for="audit-outcome">Outcome</label><select id="audit-outcome" name="outcome">
        ${["", "ok", "denied", "failed"].map(o => `<option value="${o}" ${params.outcome === o ? "selected" : ""}>${o || "any"}</option>`).join("")}</select>
      ${field("since", "Since (RFC 3339)", "placeholder=\"2025-01-01T00:00:00Z\"")}${field("until", "Until (RFC 3339)")}
      <button type="submit">Filter</button></form>
    ${entries.length ? `<table><tr><th>When</th><th>Identity</th><th>Address</th><th>Action</th><th>Target</th><th>Outcome</th><th>Detail</th><th>Count</th></tr>
      ${entries.map(e => `<tr><td>${when(e.at)}</td><td>${esc(e.identity)}</td><td class="mono">${esc(e.address)}</td><td>${esc(e.action)}</td>
        <td class="mono">${esc(e.target)}</td><td class="${e.outcome === "ok" ? "" : "error"}">${esc(e.outcome)}</td><td>${esc(e.detail)}</td><td>${e.count}</td></tr>`).join("")}</table>
      ${entries.length >= 100 ? `<p><a href="#/audit?${new URLSearchParams({ ...params, before: entries[entries.length - 1].id })}">Older entries</a></p>` : ""}`
      : `<p class="muted">No entries match.</p>`}</section>`;
  document.getElementById("audit-filter").addEventListener("submit", ev => {
    ev.preventDefault();
    const next = Object.fromEntries([...new FormData(ev.target)].filter(([, v]) => v));
    location.hash = `#/audit?${new URLSearchParams(next)}`;
  });
}

// ---- signing in ----

// The window title names the page shown, so tabs, history and screen
// readers tell the sign-in form from the pages behind it.
const SECTION_TITLES = {
  overview: "Overview", images: "Images", vulnerabilities: "Vulnerabilities", queue: "Scan queue",
  users: "Users", robots: "Robots", bindings: "Access", audit: "Audit log",
};

function setTitle(what) {
  document.title = `${what} · drydock`;
}

async function loadSession() {
  const r = await fetch(API + "/auth/session", { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (r.status === 401) return null;
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new Error((body && body.error && body.error.message) || `${r.status} ${r.statusText}`);
  return body;
}

function renderHeader() {
  const on = session && session.access_control;
  const admin = on && session.admin;
  for (const a of document.querySelectorAll("nav a[data-admin]")) a.hidden = !admin;
  document.querySelector("nav").hidden = !session && !anonymous;
  const user = document.getElementById("user");
  if (on) {
    user.innerHTML = `<span title="${esc(session.kind)}">${esc(session.name)}</span>${admin ? ` <span class="pill">admin</span>` : ""}
      <button id="logout" type="button">Sign out</button>`;
    document.getElementById("logout").addEventListener("click", logout);
  } else if (anonymous) {
    user.innerHTML = `<button id="signin" type="button">Sign in</button>`;
    document.getElementById("signin").addEventListener("click", () => { anonymous = false; showLogin(); });
  } else {
    user.innerHTML = "";
  }
}

function showLogin(message) {
  navigation++;
  session = null;
  csrf = null;
  renderHeader();
  setTitle("Sign in");
  view().innerHTML = `<section class="login"><h2>Sign in to drydock</h2>
    <form id="login" class="form">
      <label for="login-username">User name</label><input id="login-username" name="username" autocomplete="username" required>
      <label for="login-password">Password</label><input id="login-password" name="password" type="password" autocomplete="current-password" required>
      <button type="submit">Sign in</button>
      <p class="error" role="alert">${esc(message || "")}</p>
    </form>
    <p class="muted">Robot accounts sign in as <code>robot$NAME</code>. <a href="#/" id="browse">Browse public repositories without signing in</a></p></section>`;
  document.getElementById("browse").addEventListener("click", ev => {
    ev.preventDefault();
    anonymous = true;
    renderHeader();
    if (location.pathname === "/ui/login") location.assign("/ui/#/");
    else route();
  });
  onSubmit("login", v => post("/auth/login", { username: v.username, password: v.password }), async r => {
    csrf = r.csrf;
    session = await loadSession();
    if (session) csrf = session.csrf || csrf;
    renderHeader();
    if (location.pathname === "/ui/login") location.assign("/ui/#/");
    else await route();
  });
  document.getElementById("login-username").focus();
}

async function logout() {
  try {
    await post("/auth/logout");
  } catch (e) {
    // 401: the session had ended already. Anything else: the cookie may
    // still be valid, so do not claim to have signed out.
    if (e.status !== 401) {
      alert(`Could not sign out: ${e.message}`);
      return;
    }
  }
  anonymous = false;
  showLogin("Signed out.");
}

async function route() {
  if (!session && !anonymous) return showLogin();
  navigation++;
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, qs] = hash.split("?");
  const params = Object.fromEntries(new URLSearchParams(qs || ""));
  const section = path.split("/")[1] || "overview";
  for (const a of document.querySelectorAll("nav a")) {
    const current = a.dataset.nav === section;
    a.classList.toggle("active", current);
    // Screen readers announce the current page, not just a colour change.
    if (current) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  setTitle(path.startsWith("/image/") ? "Image" : (SECTION_TITLES[section] || SECTION_TITLES.overview));
  try {
    if (path.startsWith("/image/")) await image(decodeURIComponent(path.slice(7)), params);
    else if (section === "images") await images();
    else if (section === "vulnerabilities") await vulnerabilities();
    else if (section === "queue") await queue();
    else if (section === "users") await users();
    else if (section === "robots") await robots();
    else if (section === "bindings") await bindings();
    else if (section === "audit") await audit(params);
    else await overview();
  } catch (e) {
    if (e instanceof Stale || (e.status === 401 && !anonymous)) return;
    view().innerHTML = `<section><p class="error">${esc(e.message)}</p></section>`;
  }
}

async function boot() {
  try {
    session = await loadSession();
  } catch (e) {
    view().innerHTML = `<section><p class="error">${esc(e.message)}</p></section>`;
    return;
  }
  csrf = session && session.csrf ? session.csrf : null;
  renderHeader();
  if (!session || location.pathname === "/ui/login") {
    if (session) location.assign("/ui/#/");
    else showLogin();
    return;
  }
  route();
}

window.addEventListener("hashchange", route);
boot();

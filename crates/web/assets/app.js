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
  // Live refreshes draw again only when some answer changed.
  const text = JSON.stringify(data);
  if (lastBodies.get(path) !== text) liveChanged = true;
  lastBodies.set(path, text);
  if (lastBodies.size > 200) lastBodies.delete(lastBodies.keys().next().value);
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

// RFC 3339 text, or milliseconds since the epoch (webhooks, deliveries).
function when(t) {
  if (typeof t === "number") t = new Date(t).toISOString();
  return t ? esc(String(t).replace("T", " ").replace(/\.\d+/, "")) : "";
}

const view = () => document.getElementById("view");

// ---- administration (access control on, administrators only) ----

function form(id, fields, submit) {
  return `<form id="${id}" class="form">${fields.map(([name, label, attrs]) =>
    `<label for="${id}-${name}">${label}</label><input id="${id}-${name}" name="${name}" ${attrs || ""}>`).join("")}
    <button type="submit">${submit}</button><p class="error" role="alert"></p></form>`;
}

// A live refresh that finds nothing changed leaves the page as drawn, yet
// the page function runs on and binds its handlers again: bound twice, a
// button would act twice (two webhooks, two deliveries). Each element is
// bound once; a redraw makes new elements, which are bound afresh.
function firstBind(el) {
  if (!el || el.dataset.bound) return false;
  el.dataset.bound = "1";
  return true;
}

// Run `action` on submit; show its error under the form, or re-render.
function onSubmit(id, action, after) {
  const f = document.getElementById(id);
  if (!firstBind(f)) return;
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
    if (!firstBind(b)) continue;
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
  overview: "Overview", repositories: "Repositories", repository: "Repository", images: "Images",
  image: "Image", vulnerabilities: "Vulnerabilities", vulnerability: "Vulnerability", queue: "Scan queue",
  exemptions: "Exemptions", webhooks: "Webhooks", usage: "Usage", settings: "Settings",
  users: "Users", robots: "Robots", bindings: "Access", audit: "Audit log",
};
// Sub-pages highlight the section they belong to.
const NAV_OF = { repository: "repositories", image: "images", vulnerability: "vulnerabilities" };

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
  // Without access control every caller administers; settings show then too.
  document.querySelector('nav a[data-nav="settings"]').hidden = !(admin || (session && !on));
  for (const a of document.querySelectorAll("nav a[data-signed-in]")) a.hidden = !session;
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

// The page on screen: its address, and the render that drew it, so a
// live refresh can draw it again.
let current = "";

async function route(live) {
  if (!session && !anonymous) return showLogin();
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const params = Object.fromEntries(new URLSearchParams(query || ""));
  const parts = path.split("/");
  const section = parts[1] || "overview";
  const arg = parts.slice(2).join("/");
  const samePage = current.split("?")[0] === path;
  if (!live) {
    navigation++;
    liveMode = false;
    // Loading state: a new page clears the old one; a filter change on the
    // same page keeps it (and the focus in it) until the answer comes.
    main().setAttribute("aria-busy", "true");
    if (!samePage) view().innerHTML = `<p class="muted" role="status">Loading…</p>`;
  } else {
    liveMode = true;
  }
  current = hash;
  const nav = NAV_OF[section] || section;
  for (const a of document.querySelectorAll("nav a")) {
    const on = a.dataset.nav === nav;
    a.classList.toggle("active", on);
    // Screen readers announce the current page, not just a colour change.
    if (on) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (!live) setTitle(SECTION_TITLES[section] || SECTION_TITLES.overview);
  try {
    const dec = decodeURIComponent(arg);
    if (section === "image" && arg) await image(dec, params);
    else if (section === "repository" && arg) await repository(dec, params);
    else if (section === "vulnerability" && arg) await vulnerability(dec);
    else if (section === "repositories") await repositories(params);
    else if (section === "images") await images(params);
    else if (section === "vulnerabilities") await vulnerabilities(params);
    else if (section === "queue") await queue();
    else if (section === "exemptions") await exemptions();
    else if (section === "webhooks") await webhooks(params);
    else if (section === "usage") await usage(params);
    else if (section === "settings") await settings();
    else if (section === "users") await users();
    else if (section === "robots") await robots();
    else if (section === "bindings") await bindings();
    else if (section === "audit") await audit(params);
    else await overview();
  } catch (e) {
    if (e instanceof Stale || (e.status === 401 && !anonymous)) return;
    if (live) return; // a failed refresh leaves the page as it was
    // An expired (or foreign) list cursor: offer the list's first page.
    const restart = e.status === 400 && params.cursor
      ? `<p><a href="#${esc(path)}?${esc(new URLSearchParams(Object.entries(params).filter(([k]) => k !== "cursor")))}">Start again from the first page</a></p>` : "";
    view().innerHTML = `<section><p class="error" role="alert">${esc(e.message)}</p>${restart}</section>`;
  } finally {
    if (!live) main().removeAttribute("aria-busy");
  }
}

// ---- live updates ----

// Every few seconds the page on screen is read again. The API answers
// with an ETag (Cache-Control: no-cache), so the browser revalidates and
// an unchanged answer costs a 304; paint() skips drawing when nothing the
// page read has changed, so focus, scroll and open dialogs stay put.
let liveMode = false;
let liveChanged = false;
const lastBodies = new Map();
const LIVE_MS = 3000;
// Pages of the registry's state; administration pages change only by
// what the user does there.
const LIVE_SECTIONS = new Set(["overview", "repositories", "repository", "images", "image", "vulnerabilities", "vulnerability", "queue", "webhooks", "exemptions", "usage"]);

setInterval(() => {
  if (document.hidden || (!session && !anonymous) || !current) return;
  if (document.querySelector("dialog[open]")) return;
  const section = (location.hash.replace(/^#\/?/, "").split(/[/?]/)[0]) || "overview";
  if (!LIVE_SECTIONS.has(section)) return;
  if (main().getAttribute("aria-busy") === "true") return;
  const el = document.activeElement;
  // Someone typing in a form keeps their text.
  if (el && el.closest && el.closest("form")) return;
  liveChanged = false;
  route(true);
}, LIVE_MS);

function announce(message) {
  const live = document.getElementById("live");
  live.textContent = "";
  // A changed text is what screen readers announce.
  setTimeout(() => { live.textContent = message; }, 50);
}

// Draw the page; in a live refresh only when something changed, keeping
// the focused control (by id) and its caret.
function paint(html) {
  if (liveMode && !liveChanged) return;
  const el = document.activeElement;
  const id = el && el.id;
  const caret = el && typeof el.selectionStart === "number" ? el.selectionStart : null;
  view().innerHTML = html;
  if (liveMode) announce("Updated.");
  if (id) {
    const again = document.getElementById(id);
    if (again) {
      again.focus();
      if (caret !== null && typeof again.setSelectionRange === "function") {
        try { again.setSelectionRange(caret, caret); } catch { /* not a text field */ }
      }
    }
  }
}

const main = () => document.getElementById("main");

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

// A navigation (never a live refresh: the event is not the `live` flag).
window.addEventListener("hashchange", () => route());
boot();

// drydock dashboard: a small hash-routed page over the management API.
// Every number on screen comes from /api/v1; nothing is computed here
// beyond sums for the overview cards.
"use strict";

const API = "/api/v1";
const SEVERITIES = ["critical", "high", "medium", "low", "unknown"];

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

async function get(path) {
  const r = await fetch(API + path, { headers: { Accept: "application/json" } });
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new Error((body && body.error && body.error.message) || `${r.status} ${r.statusText}`);
  return body;
}

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
          <td>${f.fixed_version ? esc(f.fixed_version) : `<span class="muted">${f.status === "wont_fix" ? "won't fix" : "no fix yet"}</span>`}</td><td>${esc(f.status)}${f.exempt ? ` <span class="pill" title="${esc(f.exempted_by)}">exempt</span>` : ""}</td>
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

async function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, qs] = hash.split("?");
  const params = Object.fromEntries(new URLSearchParams(qs || ""));
  const section = path.split("/")[1] || "overview";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.nav === section);
  try {
    if (path.startsWith("/image/")) await image(decodeURIComponent(path.slice(7)), params);
    else if (section === "images") await images();
    else if (section === "vulnerabilities") await vulnerabilities();
    else if (section === "queue") await queue();
    else await overview();
  } catch (e) {
    view().innerHTML = `<section><p class="error">${esc(e.message)}</p></section>`;
  }
}

window.addEventListener("hashchange", route);
route();

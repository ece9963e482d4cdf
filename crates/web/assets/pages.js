// drydock dashboard: the registry's pages (overview, repositories, images,
// vulnerabilities, one image, queue, exemptions, webhooks, usage,
// settings). Loaded before app.js, which owns requests, sign-in and
// routing; every list here is paged, sorted and filtered by the server.
"use strict";

const STATE_LABELS = {
  not_assessed: "not assessed",
  waiting_for_database: "waiting for a vulnerability database",
  assessing: "assessing",
  failed: "failed",
  unsupported: "unsupported (not an image)",
  healthy: "healthy",
  unhealthy: "unhealthy",
  incomplete: "incomplete",
};

function stateBadge(s, reason) {
  const k = STATE_LABELS[s] ? s : "not_assessed";
  return `<span class="state ${esc(k)}"${reason ? ` title="${esc(reason)}"` : ""}>${esc(STATE_LABELS[k])}</span>`;
}

// The state of one image as GET /images/{digest} shows it: a result
// matched against no database is a wait, never health.
function imageState(img) {
  if (img.status === "unsupported" || img.kind === "artifact") return "unsupported";
  if (img.status === "failed") return "failed";
  if (img.health) return img.health.status === "healthy" ? "healthy" : img.health.status === "unhealthy" ? "unhealthy" : "incomplete";
  if (img.kind === "index" && (img.children || []).some(c => c.status === "failed")) return "failed";
  if (img.status === "done" || (img.kind === "index" && (img.children || []).length && img.children.every(c => c.status === "done"))) return "waiting_for_database";
  if (img.status === "cataloging" || img.status === "matching") return "assessing";
  return "not_assessed";
}

function bytes(n) {
  if (n == null) return "";
  const u = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i && n < 10 ? 1 : 0)} ${u[i]}`;
}

function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : "";
}

// A wide table scrolls inside its own box, so the page never scrolls sideways.
function table(caption, head, rows, empty) {
  if (!rows.length) return `<p class="muted">${esc(empty || "Nothing here.")}</p>`;
  return `<div class="scroll" tabindex="0" role="region" aria-label="${esc(caption)}"><table><caption>${esc(caption)}</caption>
    <thead><tr>${head.map(h => `<th scope="col">${h}</th>`).join("")}</tr></thead><tbody>${rows.join("")}</tbody></table></div>`;
}

function repoLink(r) {
  return `<a href="#/repository/${encodeURIComponent(r)}">${esc(r)}</a>`;
}

function vulnLink(id) {
  return `<a href="#/vulnerability/${encodeURIComponent(id)}">${esc(id)}</a>`;
}

// Only http(s) links leave the page; anything else is shown as text.
function extLink(u) {
  return /^https?:\/\//i.test(u) ? `<a href="${esc(u)}" rel="noopener noreferrer" target="_blank">${esc(u)}</a>` : esc(u);
}

function pager(params, next, route) {
  const back = params.cursor ? `<a href="#${route}${qs({ ...params, cursor: "" })}">First page</a>` : "";
  const more = next ? `<a href="#${route}${qs({ ...params, cursor: next })}">Next page</a>` : "";
  return back || more ? `<nav class="pager" aria-label="Pages">${back} ${more}</nav>` : "";
}

// ---- charts (SVG, drawn here: no library) ----

function barChart(title, bars) {
  const max = Math.max(1, ...bars.map(b => b.value));
  const h = 22 * bars.length + 4;
  return `<figure class="chart"><svg viewBox="0 0 320 ${h}" width="100%" role="img" aria-label="${esc(title)}: ${bars.map(b => `${b.label} ${b.value}`).join(", ")}">
    ${bars.map((b, i) => `<text x="0" y="${22 * i + 15}" class="axis">${esc(b.label)}</text>
      <rect x="90" y="${22 * i + 3}" height="16" width="${Math.max(1, 180 * b.value / max)}" class="bar ${esc(b.cls || "")}"></rect>
      <text x="${96 + 180 * b.value / max}" y="${22 * i + 15}" class="axis">${b.value}</text>`).join("")}
  </svg><figcaption>${esc(title)}</figcaption></figure>`;
}

function lineChart(title, points, series) {
  const w = 320, h = 120, pad = 24;
  if (!points.length) return `<figure class="chart"><p class="muted">No history yet: one point is kept a day.</p><figcaption>${esc(title)}</figcaption></figure>`;
  const max = Math.max(1, ...points.flatMap(p => series.map(s => p[s.key])));
  const x = i => pad + (points.length === 1 ? (w - 2 * pad) / 2 : i * (w - 2 * pad) / (points.length - 1));
  const y = v => h - pad - v * (h - 2 * pad) / max;
  const label = series.map(s => `${s.label}: ${points.map(p => `${p.day} ${p[s.key]}`).join(", ")}`).join("; ");
  return `<figure class="chart"><svg viewBox="0 0 ${w} ${h}" width="100%" role="img" aria-label="${esc(title)}. ${esc(label)}">
    <line x1="${pad}" y1="${h - pad}" x2="${w - pad}" y2="${h - pad}" class="grid"></line>
    ${series.map(s => `<polyline fill="none" class="line ${s.cls}" points="${points.map((p, i) => `${x(i)},${y(p[s.key])}`).join(" ")}"></polyline>
      ${points.map((p, i) => `<circle cx="${x(i)}" cy="${y(p[s.key])}" r="3" class="dot ${s.cls}"></circle>`).join("")}`).join("")}
    <text x="${pad}" y="${h - 6}" class="axis">${esc(points[0].day)}</text>
    <text x="${w - pad}" y="${h - 6}" class="axis" text-anchor="end">${esc(points[points.length - 1].day)}</text>
    <text x="2" y="${pad - 8}" class="axis">${max}</text>
  </svg><figcaption>${esc(title)} — ${series.map(s => `<span class="key ${s.cls}">${esc(s.label)}</span>`).join(" ")}</figcaption></figure>`;
}

function columnChart(title, items) {
  const w = 320, h = 100, max = Math.max(1, ...items.map(i => i.count));
  const bw = (w - 10) / Math.max(1, items.length);
  return `<figure class="chart"><svg viewBox="0 0 ${w} ${h + 14}" width="100%" role="img" aria-label="${esc(title)}: ${items.map(i => `${i.day} ${i.count}`).join(", ")}">
    ${items.map((it, i) => `<rect x="${5 + i * bw + 2}" y="${h - h * it.count / max}" width="${bw - 4}" height="${Math.max(0, h * it.count / max)}" class="bar low"><title>${esc(it.day)}: ${it.count}</title></rect>`).join("")}
    <text x="5" y="${h + 12}" class="axis">${esc((items[0] || {}).day || "")}</text>
    <text x="${w - 5}" y="${h + 12}" class="axis" text-anchor="end">${esc((items[items.length - 1] || {}).day || "")}</text>
  </svg><figcaption>${esc(title)}</figcaption></figure>`;
}

// ---- overview ----

function dbCard(db) {
  if (!db.available) {
    return `<section aria-labelledby="db-h"><h2 id="db-h">Vulnerability database</h2>
      <p class="error">No vulnerability database is installed, so no image can be called healthy: images wait for one.
      Run <code>drydock db update</code> or <code>drydock db import PATH</code>.</p></section>`;
  }
  return `<section aria-labelledby="db-h"><h2 id="db-h">Vulnerability database</h2>
    <p>Version <code>${esc(db.version)}</code>, built ${when(db.built_at)} (${esc(db.age_days)} day${db.age_days === 1 ? "" : "s"} ago).</p>
    ${db.stale ? `<p class="warn" role="note">The database is older than ${esc(db.stale_after_days)} days: findings published since are missing. Update it.</p>` : ""}
    ${table("Sources of the vulnerability database", ["Source", "Records", "Snapshot"],
      db.sources.map(s => `<tr><td>${esc(s.name)}</td><td>${esc(s.records)}</td><td>${when(s.snapshot || s.file_date) || `<span class="muted">unknown</span>`}</td></tr>`))}
  </section>`;
}

async function overview() {
  const o = await get("/overview");
  const n = k => o.images[k] || 0;
  const card = (label, value, cls, href) => `<div class="card"><div class="label">${label}</div><div class="value ${cls || ""}">${href ? `<a href="${href}">${value}</a>` : value}</div></div>`;
  const notAssessed = n("not_assessed") + n("waiting_for_database") + n("assessing");
  const f = o.findings || {};
  const pending = ["queued", "cataloging", "matching"].reduce((a, k) => a + (o.queue[k] || 0), 0);
  paint(`
    <h2 class="page">Overview</h2>
    <div class="cards">
      ${card("Images", o.images_total, "", "#/images")}
      ${card("Healthy", n("healthy"), "health healthy", "#/images?state=healthy")}
      ${card("Unhealthy", n("unhealthy"), n("unhealthy") ? "health unhealthy" : "", "#/images?state=unhealthy")}
      ${card("Failed", n("failed"), n("failed") ? "health unhealthy" : "", "#/images?state=failed")}
      ${card("Not assessed", notAssessed, "", "#/images?state=not_assessed,waiting_for_database,assessing")}
      ${card("Untagged digests", o.untagged, "", "#/images?untagged=true")}
      ${card("Scans pending", pending, "", "#/queue")}
    </div>
    ${n("waiting_for_database") ? `<p class="warn" role="note">${n("waiting_for_database")} image${n("waiting_for_database") === 1 ? " is" : "s are"} waiting for a vulnerability database.</p>` : ""}
    <div class="grid2">
      <section aria-labelledby="sev-h"><h2 id="sev-h">Open findings by severity</h2>
        ${barChart("Open findings by severity", SEVERITIES.map(k => ({ label: k, value: f[k] || 0, cls: k })))}
        ${barChart("Fixable or not", [{ label: "fixable", value: o.fixable, cls: "ok" }, { label: "no fix", value: o.not_fixable, cls: "unknown" }])}
      </section>
      <section aria-labelledby="trend-h"><h2 id="trend-h">Trend</h2>
        ${lineChart("Unhealthy images and open findings per day", o.trend, [{ key: "unhealthy", label: "unhealthy images", cls: "bad" }, { key: "findings", label: "findings", cls: "info" }])}
        ${columnChart("Assessments finished per day (14 days)", o.scan_activity)}
      </section>
    </div>
    ${dbCard(o.database)}
    <section aria-labelledby="worst-h"><h2 id="worst-h">Most vulnerable images</h2>
      ${table("Most vulnerable images", ["Image", "Repository", "Tags", "State", "Findings"], o.most_vulnerable.map(i =>
        `<tr><td>${imageLink(i.digest)}</td><td>${repoLink(i.repository)}</td><td>${tagPills(i.tags)}</td><td>${stateBadge(i.state, i.reason)}</td><td>${counts(i.summary)}</td></tr>`), "No image has findings.")}
    </section>
    <section aria-labelledby="spread-h"><h2 id="spread-h">Most widespread vulnerabilities</h2>
      ${table("Most widespread vulnerabilities", ["Vulnerability", "Severity", "Affected images", "Fix", "Summary"], o.most_widespread.map(v =>
        `<tr><td>${vulnLink(v.id)}</td><td>${sev(v.severity)}</td><td>${v.images}</td><td>${v.fixable ? "available" : `<span class="muted">none yet</span>`}</td><td>${esc(v.summary)}</td></tr>`), "No vulnerabilities found.")}
      <p><a href="#/vulnerabilities">All vulnerabilities</a></p>
    </section>`);
}

function tagPills(tags) {
  return (tags || []).map(t => `<span class="pill">${esc(t)}</span>`).join("") || `<span class="muted">untagged</span>`;
}

// ---- filters that keep focus ----

// Filter controls change the address (so the view is a deep link); a text
// field waits for a pause in typing. Focus is restored by id after the
// page is drawn again (see paint in app.js).
function bindFilters(route, params) {
  const go = next => {
    for (const k of Object.keys(next)) if (!next[k]) delete next[k];
    delete next.cursor;
    location.hash = `#${route}${qs(next)}`;
  };
  for (const el of view().querySelectorAll("[data-filter]")) {
    if (!firstBind(el)) continue;
    const name = el.dataset.filter;
    if (el.type === "search") {
      let timer;
      el.addEventListener("input", () => {
        clearTimeout(timer);
        timer = setTimeout(() => go({ ...params, [name]: el.value.trim() }), 300);
      });
    } else if (el.type === "checkbox") {
      el.addEventListener("change", () => {
        const group = [...view().querySelectorAll(`[data-filter="${name}"]:checked`)].map(c => c.value);
        go({ ...params, [name]: group.join(",") });
      });
    } else {
      el.addEventListener("change", () => go({ ...params, [name]: el.value }));
    }
  }
}

function select(id, name, label, options, value) {
  return `<label for="${id}">${label}</label><select id="${id}" data-filter="${name}">
    ${options.map(([v, l]) => `<option value="${esc(v)}" ${String(value || "") === v ? "selected" : ""}>${esc(l)}</option>`).join("")}</select>`;
}

function search(id, name, label, value) {
  return `<label for="${id}">${label}</label><input id="${id}" type="search" data-filter="${name}" value="${esc(value || "")}" autocomplete="off">`;
}

function checks(name, legend, options, value) {
  const on = String(value || "").split(",");
  return `<fieldset class="checks"><legend>${legend}</legend>${options.map(([v, l]) =>
    `<label><input type="checkbox" id="f-${name}-${v}" data-filter="${name}" value="${esc(v)}" ${on.includes(v) ? "checked" : ""}> ${esc(l)}</label>`).join("")}</fieldset>`;
}

// ---- repositories ----

async function repositories(params) {
  const page = await get(`/browse/repositories${qs({ q: params.q, cursor: params.cursor, limit: 50 })}`);
  paint(`<section aria-labelledby="repos-h"><h2 id="repos-h">Repositories</h2>
    <div class="filters" role="search">${search("repos-q", "q", "Search", params.q)}</div>
    <p class="muted" aria-live="polite">${page.total} repositor${page.total === 1 ? "y" : "ies"}</p>
    ${table("Repositories", ["Repository", "Tags", "Images", "Unhealthy", "Untagged digests", "Last push"], page.items.map(r =>
      `<tr><td>${repoLink(r.name)}</td><td>${r.tags}</td><td>${r.images}</td><td>${r.unhealthy ? `<span class="health unhealthy">${r.unhealthy}</span>` : 0}</td><td>${r.untagged}</td><td>${when(r.last_pushed_at)}</td></tr>`), "No repository matches.")}
    ${pager(params, page.next, "/repositories")}</section>`);
  bindFilters("/repositories", params);
}

async function repository(name, params) {
  const page = await get(`/browse/tags${qs({ repository: name, q: params.q, sort: params.sort, cursor: params.cursor, limit: 50 })}`);
  setTitle(`${name} · Repositories`);
  paint(`<p><a href="#/repositories">Repositories</a> › ${esc(name)}</p>
    <section aria-labelledby="tags-h"><h2 id="tags-h">Tags of ${esc(name)}</h2>
    <div class="filters" role="search">${search("tags-q", "q", "Search tags", params.q)}
      ${select("tags-sort", "sort", "Sort", [["", "by name"], ["pushed", "newest push first"]], params.sort)}</div>
    <p class="muted">${page.total} tag${page.total === 1 ? "" : "s"} · <a href="#/images${qs({ repository: name, untagged: "true" })}">untagged digests</a></p>
    ${table(`Tags of ${name}`, ["Tag", "Digest", "Platforms", "Size", "Pushed", "Last pulled", "Health", "Findings"], page.items.map(t =>
      `<tr><td><b>${esc(t.tag)}</b></td><td>${imageLink(t.digest)}</td><td>${t.platforms.map(esc).join(", ") || esc(t.kind)}</td><td>${bytes(t.size)}</td>
        <td>${when(t.pushed_at)}</td><td>${when(t.pulled_at) || `<span class="muted">never</span>`}</td><td>${stateBadge(t.state, t.reason)}</td><td>${counts(t.summary)}</td></tr>`), "No tag matches.")}
    ${pager(params, page.next, `/repository/${encodeURIComponent(name)}`)}</section>`);
  bindFilters(`/repository/${encodeURIComponent(name)}`, params);
}

// ---- images ----

const STATE_OPTIONS = Object.entries(STATE_LABELS).filter(([k]) => k !== "unsupported");

async function images(params) {
  const page = await get(`/browse/images${qs({ q: params.q, state: params.state, repository: params.repository, untagged: params.untagged, sort: params.sort, order: params.order, cursor: params.cursor, limit: 50 })}`);
  const untagged = params.untagged === "true";
  paint(`<section aria-labelledby="images-h"><h2 id="images-h">${untagged ? "Untagged digests" : "Images"}</h2>
    <p class="muted">${untagged ? `Digests no tag points to any more (superseded), kept apart. <a href="#/images">Tagged images</a>` : `An index is one image with its platforms inside. <a href="#/images?untagged=true">Untagged digests</a>`}</p>
    <div class="filters" role="search">${search("images-q", "q", "Search", params.q)}
      ${select("images-sort", "sort", "Sort", [["", "worst first"], ["name", "by name"], ["pushed", "newest push"], ["findings", "most findings"], ["size", "largest"]], params.sort)}
      ${checks("state", "State", STATE_OPTIONS, params.state)}</div>
    <p class="muted">${page.total} match${page.total === 1 ? "es" : ""}${params.repository ? ` in ${esc(params.repository)}` : ""}</p>
    ${table(untagged ? "Untagged digests" : "Images", ["Image", "Repository", "Tags", "Platforms", "State", "Findings", "Size", "Pushed"], page.items.map(i =>
      `<tr><td>${imageLink(i.digest)}</td><td>${repoLink(i.repository)}</td><td>${tagPills(i.tags)}</td>
        <td>${i.platforms.map(p => esc(p.platform || "")).filter(Boolean).join(", ") || esc(i.kind)}</td>
        <td>${stateBadge(i.state, i.reason)}${i.stale ? ` <span class="muted">(stale)</span>` : ""}${i.reassessing ? ` <span class="muted">(re-assessing)</span>` : ""}</td>
        <td>${counts(i.summary)}</td><td>${bytes(i.size)}</td><td>${when(i.pushed_at)}</td></tr>`), "No image matches.")}
    ${pager(params, page.next, "/images")}</section>`);
  bindFilters("/images", { ...params, sort: params.sort || "" });
}

// ---- vulnerabilities ----

async function vulnerabilities(params) {
  const page = await get(`/vulnerabilities${qs({ q: params.q, severity: params.severity, fixable: params.fixable, sort: params.sort, cursor: params.cursor, limit: 50 })}`);
  paint(`<section aria-labelledby="vulns-h"><h2 id="vulns-h">Vulnerabilities</h2>
    <p class="muted">Each vulnerability once, with the number of images it affects.</p>
    <div class="filters" role="search">${search("vulns-q", "q", "Search", params.q)}
      ${select("vulns-sev", "severity", "Severity", [["", "any"], ["critical", "critical"], ["high+", "high and above"], ["high", "high"], ["medium+", "medium and above"], ["medium", "medium"], ["low", "low"], ["unknown", "unknown"]], params.severity)}
      ${select("vulns-fix", "fixable", "Fix", [["", "any"], ["true", "fix available"], ["false", "no fix yet"]], params.fixable)}
      ${select("vulns-sort", "sort", "Sort", [["", "severity"], ["images", "most images"], ["id", "by id"]], params.sort)}</div>
    <p class="muted">${page.total} vulnerabilit${page.total === 1 ? "y" : "ies"}</p>
    ${table("Vulnerabilities", ["Vulnerability", "Severity", "Images", "Packages", "Fix", "Summary"], page.items.map(v =>
      `<tr><td>${vulnLink(v.id)}<br><span class="muted">${v.aliases.map(esc).join(", ")}</span></td><td>${sev(v.severity)}</td>
        <td>${v.images}${v.untagged ? ` <span class="muted">+${v.untagged} untagged</span>` : ""}</td><td>${v.packages.slice(0, 5).map(esc).join(", ")}${v.packages.length > 5 ? "…" : ""}</td>
        <td>${v.fixable ? "available" : `<span class="muted">none yet</span>`}</td><td>${esc(v.summary)}</td></tr>`), "No vulnerability matches.")}
    ${pager(params, page.next, "/vulnerabilities")}</section>`);
  bindFilters("/vulnerabilities", params);
}

// One row of a vulnerability's affected repositories.
function affectedRow(a) {
  return `<tr><td>${repoLink(a.repository)}</td><td>${tagPills(a.tags)}</td><td>${a.digests.map(imageLink).join(" ")}</td><td>${a.packages.map(esc).join("<br>")}</td></tr>`;
}

const AFFECTED_PAGE = 25;

async function vulnerability(id) {
  const v = await get(`/vulnerabilities/${encodeURIComponent(id)}${qs({ limit: AFFECTED_PAGE })}`);
  setTitle(`${v.id} · Vulnerabilities`);
  paint(`<p><a href="#/vulnerabilities">Vulnerabilities</a> › ${esc(v.id)}</p>
    <section aria-labelledby="vuln-h"><h2 id="vuln-h">${esc(v.id)} ${sev(v.severity)}</h2>
      ${v.aliases.length ? `<p>Also known as ${v.aliases.map(esc).join(", ")}</p>` : ""}
      <p>${esc(v.summary) || `<span class="muted">No description.</span>`}</p>
      <dl class="facts">
        <dt>CVSS</dt><dd>${v.cvss_vector ? `<code>${esc(v.cvss_vector)}</code> (score ${esc(v.cvss_score)}, from ${esc(v.cvss_source)})` : `<span class="muted">no vector</span>`}</dd>
        <dt>Severity from</dt><dd>${esc(v.severity_source)}</dd>
        <dt>Data source</dt><dd>${esc(v.data_source)}</dd>
        <dt>Affected</dt><dd>${v.images} image${v.images === 1 ? "" : "s"}${v.untagged ? `, ${v.untagged} untagged digest${v.untagged === 1 ? "" : "s"}` : ""}</dd>
        <dt>Fix</dt><dd>${Object.entries(v.fix).map(([p, vs]) => `${esc(p)} → ${vs.length ? vs.map(x => `<b>${esc(x)}</b>`).join(", ") : `<span class="muted">no fix yet</span>`}`).join("<br>")}</dd>
      </dl>
      ${v.references.length ? `<h3>References</h3><ul class="refs">${v.references.map(r => `<li>${extLink(r)}</li>`).join("")}</ul>` : ""}
    </section>
    <section aria-labelledby="aff-h"><h2 id="aff-h">Affected repositories and tags</h2>
      ${table("Affected repositories and tags", ["Repository", "Tags", "Images", "Packages"], v.affected.map(affectedRow))}
      <p class="pager"><span id="aff-count" role="status"></span> <button type="button" id="aff-more" hidden>More repositories</button></p>
    </section>`);
  // The server pages `affected` (thousands of images in hundreds of
  // repositories); further pages are added below the first on request.
  let next = v.affected_next, shown = v.affected.length;
  const more = document.getElementById("aff-more"), count = document.getElementById("aff-count");
  const show = () => {
    count.textContent = next ? `${shown} of ${v.affected_total} repositories` : "";
    more.hidden = !next;
  };
  show();
  if (firstBind(more)) more.addEventListener("click", async () => {
    more.disabled = true;
    try {
      // Not through `get`: a live refresh compares only the first page.
      const p = await request("GET", `/vulnerabilities/${encodeURIComponent(id)}${qs({ limit: AFFECTED_PAGE, cursor: next })}`);
      document.querySelector("#aff-h ~ .scroll tbody").insertAdjacentHTML("beforeend", p.affected.map(affectedRow).join(""));
      next = p.affected_next;
      shown += p.affected.length;
    } catch (e) {
      count.textContent = `Cannot load more: ${e.message}`;
      return;
    } finally {
      more.disabled = false;
    }
    show();
  });
}

// ---- one image ----

const HUMAN_STATUS = { fixed: "fix available", unfixed: "no fix yet", wont_fix: "won't fix" };

// "PYSEC-2019-10|pypi|Django" → "PYSEC-2019-10 in Django (pypi)", with the
// severity when a current finding knows it.
function humanKey(k, bySev) {
  const [id, eco, pkg] = String(k).split("|");
  const s = bySev[k];
  return `${s ? sev(s) + " " : ""}${vulnLink(id)} in <b>${esc(pkg || "")}</b> <span class="muted">${esc(eco || "")}</span>`;
}

function diffSection(diffs, findings) {
  if (!diffs) return "";
  const bySev = {};
  for (const f of findings || []) bySev[`${f.id}|${f.ecosystem}|${f.package}`] = f.severity;
  const rows = [];
  const add = (label, d) => {
    if (!d) return;
    const list = (keys, what) => (keys || []).map(k => `<li>${what} ${humanKey(k, bySev)}</li>`).join("");
    const items = list(d.new, `<span class="pill new">new</span>`) + list(d.resolved, `<span class="pill resolved">resolved</span>`);
    const n = (d.new || []).length, r = (d.resolved || []).length;
    // A long list (the first match after a database arrived) stays folded.
    const body = !items ? `<p class="muted">No change.</p>`
      : n + r > 10 ? `<details><summary>${n} new, ${r} resolved</summary><ul class="changes">${items}</ul></details>`
      : `<ul class="changes">${items}</ul>`;
    rows.push(`<h3>${label}</h3>${body}`);
  };
  if (diffs.previous_assessment) add(`Since the assessment of ${when(diffs.previous_assessment.since)}`, diffs.previous_assessment);
  for (const d of diffs.previous_tag_digest || []) add(`Since ${esc(d.repository || "")}:${esc(d.tag || "")} was ${short(d.since)}`, d);
  if (!rows.length) return "";
  return `<section aria-labelledby="diff-h"><h2 id="diff-h">What changed</h2>${rows.join("")}</section>`;
}

// An exempt finding: who exempted it, why and until when (never an id).
function exemptPill(f, exemptions) {
  const e = (exemptions || []).find(x => x.id === f.exempted_by);
  if (!e) return ` <span class="pill">exempt</span>`;
  const title = `Exempted by ${e.author}: ${e.reason}${e.expires_at ? ` (until ${when(e.expires_at)})` : " (no expiry)"}`;
  return ` <span class="pill exempt" title="${esc(title)}">exempt · ${esc(e.author)}${e.expires_at ? ` until ${esc(e.expires_at.slice(0, 10))}` : ""}</span>`;
}

// A VEX statement's justification as people say it.
const VEX_JUSTIFICATIONS = {
  component_not_present: "the component is not present",
  vulnerable_code_not_present: "the vulnerable code is not present",
  vulnerable_code_not_in_execute_path: "the vulnerable code is not in the execute path",
  vulnerable_code_cannot_be_controlled_by_adversary: "the vulnerable code cannot be controlled by an adversary",
  inline_mitigations_already_exist: "inline mitigations already exist",
};
const VEX_STATUS = { not_affected: "not affected", affected: "affected", fixed: "fixed", under_investigation: "under investigation" };

function vexWhy(v) {
  const j = v.justification ? (VEX_JUSTIFICATIONS[v.justification] || v.justification) : "";
  return [j, v.impact_statement].filter(Boolean).join("; ");
}

// A finding a VEX statement takes out of the verdict: who said so, why,
// in which document.
function vexPill(f) {
  const v = f.not_affected_per_vex;
  if (!v) return "";
  const title = `Not affected per VEX document ${v.document} by ${v.author}${vexWhy(v) ? `: ${vexWhy(v)}` : ""} (${v.timestamp})`;
  return ` <span class="pill vex" title="${esc(title)}">not affected per VEX · ${esc(v.author)}</span>`;
}

function vexDetail(f) {
  const v = f.not_affected_per_vex || f.vex;
  if (!v) return "";
  const cleared = Boolean(f.not_affected_per_vex);
  return `<dl class="facts vex-note"><dt>VEX</dt><dd>${cleared ? "<b>Not affected per VEX</b> — this finding does not count toward health" : `${esc(VEX_STATUS[v.status] || v.status)} per VEX (still counted)`}</dd>
    <dt>Author</dt><dd>${esc(v.author)}</dd>
    ${v.justification ? `<dt>Justification</dt><dd>${esc(VEX_JUSTIFICATIONS[v.justification] || v.justification)} <span class="muted">(${esc(v.justification)})</span></dd>` : ""}
    ${v.impact_statement ? `<dt>Impact</dt><dd>${esc(v.impact_statement)}</dd>` : ""}
    <dt>Document</dt><dd class="mono">${esc(v.document)}</dd><dt>Stated</dt><dd>${when(v.timestamp)}</dd></dl>`;
}

function findingRow(f, exemptions, i) {
  return `<tr><td><button type="button" class="link" data-detail="${i}" aria-expanded="false" aria-controls="detail-${i}">${esc(f.id)}</button><br><span class="muted">${(f.aliases || []).map(esc).join(", ")}</span></td>
    <td>${sev(f.severity)}${f.cvss && f.cvss.score != null ? `<br><span class="muted">CVSS ${esc(f.cvss.score)}</span>` : ""}</td>
    <td>${esc(f.package)} <span class="muted">${esc(f.ecosystem)}</span></td><td>${esc(f.installed_version)}</td>
    <td>${f.fixed_version ? esc(f.fixed_version) : `<span class="muted">${f.status === "wont_fix" ? "won't fix" : "no fix yet"}</span>`}</td>
    <td>${esc(HUMAN_STATUS[f.status] || f.status)}${f.exempt ? exemptPill(f, exemptions) : ""}${vexPill(f)}${f.violates_policy ? ` <span class="pill bad">violates policy</span>` : ""}</td>
    <td>${f.exempt ? "" : `<button type="button" data-exempt="${i}">Exempt…</button>`}</td></tr>
    <tr id="detail-${i}" class="detail" hidden><td colspan="7">
      <p>${esc(f.summary) || `<span class="muted">No description.</span>`}</p>
      ${f.cvss ? `<p>CVSS ${esc(f.cvss.version)} <code>${esc(f.cvss.vector)}</code> score ${esc(f.cvss.score)} (from ${esc(f.cvss.source)})</p>` : ""}
      ${vexDetail(f)}
      <p class="muted">Data source ${esc(f.data_source)}; severity from ${esc(f.severity_source)}${f.status_note ? `; ${esc(f.status_note)}` : ""}. <a href="#/vulnerability/${encodeURIComponent(f.id)}">Every image it affects</a></p>
      ${(f.references || []).length ? `<ul class="refs">${f.references.map(r => `<li>${extLink(r)}</li>`).join("")}</ul>` : ""}
    </td></tr>`;
}

async function image(digest, params) {
  const enc = encodeURIComponent(digest);
  const img = await get(`/images/${enc}`);
  const st = imageState(img);
  const single = img.kind !== "index";
  const fq = { severity: params.severity, status: params.status, fixable: params.fixable, exempt: params.exempt, q: params.q, cursor: params.cursor, limit: 100 };
  // The findings, layers and patching are read beside each other (one
  // round trip instead of three in a row: the image page was the slowest
  // at 10,000 images); any of them failing leaves the rest of the page
  // standing, but a stale answer or a lost session ends the page.
  const settle = p => p.then(v => ({ v }), e => {
    if (e instanceof Stale || e.status === 401) throw e;
    return { e };
  });
  const target = patchTarget(img);
  const [fr, lr, pr] = await Promise.all([
    single && img.health ? settle(get(`/images/${enc}/findings${qs(fq)}`)) : null,
    // The layers page has its own cursor (`lcursor`), so paging the
    // layers keeps the findings' filters and page, and the other way round.
    img.kind === "image" ? settle(get(`/images/${enc}/layers${qs({ limit: LAYERS_PAGE, cursor: params.lcursor })}`)) : null,
    target ? settle(get(`/patches${qs({ repository: target.repository })}`)) : null,
  ]);
  const findings = fr && fr.v ? fr.v : null;
  const findingsError = fr && fr.e ? fr.e.message : "";
  const layers = lr && lr.v ? lr.v : null;
  const layersError = lr && lr.e ? lr.e.message : "";
  const patching = !pr ? null : pr.v ? pr.v : { unavailable: pr.e.status === 404 ? "" : pr.e.message };
  const title = (img.tags || [])[0] || short(img.digest);
  setTitle(`${title} · Image`);
  const rem = img.remediation;
  const h = img.health;
  const why = st === "waiting_for_database"
    ? "It was assessed before any vulnerability database was installed, so nothing was matched yet. Findings appear here as soon as a database is loaded."
    : st === "failed" ? `The assessment failed: ${img.error || (img.children || []).map(c => c.error).filter(Boolean).join("; ") || "unknown error"}`
    : st === "not_assessed" ? "Queued for assessment." : st === "assessing" ? "Being assessed now." : h ? h.reason : "";
  paint(`
    <section aria-labelledby="img-h"><h2 id="img-h">${esc(title)}</h2>
      <p class="mono wrap">${esc(img.digest)}</p>
      <p class="verdict">${stateBadge(st)} <span id="why">${esc(why)}</span> ${img.stale ? `<span class="muted">(stale: made with an older database)</span>` : ""}</p>
      ${h && h.policy ? `<p class="muted">Decided by the policy for <code>${esc(h.policy.repository)}</code>: unhealthy at ${esc(h.policy.threshold)} and above${h.policy.fixable_only ? ", counting only findings with a fix" : ""}.</p>` : ""}
      ${(img.incomplete_reasons || []).length ? `<ul>${img.incomplete_reasons.map(r => `<li>${esc(r)}</li>`).join("")}</ul>` : ""}
      <p class="muted">${esc(img.kind)} ${esc(img.platform || "")} · ${(img.tags || []).map(esc).join(", ") || "untagged"} · assessed ${when(img.assessed_at) || "never"} · database ${esc(img.db_version || "none")}</p>
      <p>${counts(img.summary)} ${img.summary ? `<span class="muted">· ${img.summary.fixable} fixable · ${img.summary.exempt} exempt</span>` : ""}</p>
      ${img.kind === "image" && img.assessed_at ? `<p>Download the SBOM: <a href="${API}/images/${enc}/sbom?format=cyclonedx" download>CycloneDX 1.6</a> · <a href="${API}/images/${enc}/sbom?format=spdx" download>SPDX 2.3</a></p>` : ""}
      ${img.kind === "index" ? `<p class="muted">Each platform has its own layers and SBOM, on its page.</p>` : ""}
      <p><button type="button" id="rescan">Rescan</button> <span id="rescan-msg" role="status"></span></p>
    </section>
    ${img.children && img.children.length ? `<section aria-labelledby="plat-h"><h2 id="plat-h">Platforms</h2>${table("Platforms", ["Image", "Platform", "State", "Findings"],
      img.children.map(c => `<tr><td>${imageLink(c.digest)}</td><td>${esc(c.platform)}</td><td>${stateBadge(imageState({ ...c, kind: "image" }), c.error || (c.health && c.health.reason))}</td><td>${counts(c.summary)}</td></tr>`))}</section>` : ""}
    ${rem ? `<section aria-labelledby="rem-h"><h2 id="rem-h">Remediation</h2>
      ${rem.base_image ? `<div class="advice">${esc(rem.base_image.advice)}</div>` : ""}
      ${rem.better_alternative ? `<div class="advice">A better starting point in this registry: ${esc(rem.better_alternative.repository)} ${imageLink(rem.better_alternative.digest)} with ${rem.better_alternative.findings} findings.</div>` : ""}
      ${upgradePlan(rem.upgrade_plan, sourceOf([...(img.findings || []), ...(findings ? findings.findings : [])]))}
      <p class="muted">${rem.findings_cleared} findings cleared by the plan; ${rem.findings_without_fix} have no fix yet.</p></section>` : ""}
    ${target ? patchSection(target, patching) : ""}
    ${diffSection(img.diffs, findings ? findings.findings : img.findings)}
    ${findingsError ? `<section aria-labelledby="find-h"><h2 id="find-h">Vulnerabilities</h2><p class="warn">The findings could not be read: ${esc(findingsError)}</p></section>` : ""}
    ${findings ? `<section aria-labelledby="find-h"><h2 id="find-h">Vulnerabilities</h2>
      <div class="filters" role="search">${search("find-q", "q", "Search", params.q)}
        ${checks("severity", "Severity", [["critical", "critical"], ["high", "high"], ["medium", "medium"], ["low", "low"], ["unknown", "unknown"]], params.severity)}
        ${select("find-high", "severity", "Quick", [["", "—"], ["high+", "high and above"]], params.severity === "high+" ? "high+" : "")}
        ${select("find-status", "status", "Status", [["", "any"], ["fixed", "fix available"], ["unfixed", "no fix yet"], ["wont_fix", "won't fix"]], params.status)}
        ${select("find-fixable", "fixable", "Fixable", [["", "any"], ["true", "yes"], ["false", "no"]], params.fixable)}
        ${select("find-exempt", "exempt", "Exempt", [["", "any"], ["true", "exempt"], ["false", "not exempt"]], params.exempt)}</div>
      <p class="muted">${findings.total} finding${findings.total === 1 ? "" : "s"} match</p>
      ${table("Findings", ["Vulnerability", "Severity", "Package", "Installed", "Fixed in", "Status", ""], findings.findings.map((f, i) => findingRow(f, findings.exemptions, i)), "No findings match.")}
      ${findings.next_cursor ? `<p><a href="#/image/${enc}${qs({ ...params, cursor: findings.next_cursor })}">Next page</a></p>` : ""}
      ${exemptDialog()}
    </section>` : ""}
    ${img.kind === "image" ? layersSection(layers, layersError, `/image/${enc}`, params) : ""}`);
  bindFilters(`/image/${enc}`, params);
  if (target) bindPatch(img.digest, target);
  const rescan = document.getElementById("rescan");
  if (firstBind(rescan)) rescan.addEventListener("click", async () => {
    const msg = document.getElementById("rescan-msg");
    try {
      await post(`/images/${enc}/rescan`);
      msg.textContent = "Queued for a new assessment.";
    } catch (e) {
      msg.textContent = e.message;
    }
  });
  if (!findings) return;
  for (const b of view().querySelectorAll("button[data-detail]")) {
    if (!firstBind(b)) continue;
    b.addEventListener("click", () => {
      const row = document.getElementById(`detail-${b.dataset.detail}`);
      row.hidden = !row.hidden;
      b.setAttribute("aria-expanded", String(!row.hidden));
    });
  }
  for (const b of view().querySelectorAll("button[data-exempt]")) {
    if (!firstBind(b)) continue;
    b.addEventListener("click", () => openExempt(findings.findings[Number(b.dataset.exempt)], (img.repositories || [])[0], b));
  }
}

// ---- layers ----

// Docker's legacy history prefixes say nothing to a reader:
// "/bin/sh -c #(nop)  CMD …" is CMD …, "/bin/sh -c apt-get …" is RUN apt-get ….
function buildStep(cmd) {
  if (!cmd) return "";
  return cmd.replace(/^\/bin\/sh -c #\(nop\)\s+/, "").replace(/^\/bin\/sh -c /, "RUN ");
}

const LAYERS_PAGE = 100;

function layersSection(page, error, route, params) {
  if (error) return `<section aria-labelledby="layers-h"><h2 id="layers-h">Layers</h2><p class="warn">The layers could not be read: ${esc(error)}</p></section>`;
  if (!page) return "";
  const pkgs = l => {
    if (l.packages_total == null) return `<span class="muted">not cataloged yet</span>`;
    if (!l.packages_total) return `<span class="muted">none</span>`;
    const more = l.packages_total - l.packages.length;
    return `<details><summary>${l.packages_total} package${l.packages_total === 1 ? "" : "s"}</summary><ul class="pkgs">${l.packages.map(p =>
      `<li>${esc(p.name)} ${esc(p.version)} <span class="muted">${esc(p.ecosystem)}</span></li>`).join("")}${more > 0 ? `<li class="muted">and ${more} more</li>` : ""}</ul></details>`;
  };
  const step = l => {
    const c = buildStep(l.created_by);
    if (!c) return `<span class="muted">unknown</span>`;
    return c.length > 160 ? `<details><summary><code class="wrap">${esc(c.slice(0, 120))}…</code></summary><code class="wrap">${esc(c)}</code></details>` : `<code class="wrap">${esc(c)}</code>`;
  };
  return `<section aria-labelledby="layers-h"><h2 id="layers-h">Layers</h2>
    <p class="muted">${page.total} layer${page.total === 1 ? "" : "s"}, bottom first: the command that created each (from the image's build history) and the packages it adds.</p>
    ${(page.notes || []).map(n => `<p class="muted">${esc(n)}</p>`).join("")}
    ${table("Layers", ["#", "Created by", "Size", "Packages added"], page.layers.map(l =>
      `<tr><td>${l.index + 1}</td><td class="cmd">${step(l)}<br><span class="mono muted">${short(l.digest)}</span></td><td>${bytes(l.size)}</td><td>${pkgs(l)}</td></tr>`), "No layers.")}
    ${layersPager(page, route, params)}</section>`;
}

// Layers from and to (1-based) and links to the first and next pages.
function layersPager(page, route, params) {
  if (!page.layers.length || (!params.lcursor && !page.next_cursor)) return "";
  const from = page.layers[0].index + 1;
  const to = page.layers[page.layers.length - 1].index + 1;
  const first = params.lcursor ? `<a href="#${route}${qs({ ...params, lcursor: "" })}">First layers</a>` : "";
  const next = page.next_cursor ? `<a href="#${route}${qs({ ...params, lcursor: page.next_cursor })}" id="layers-next">Next ${Math.min(LAYERS_PAGE, page.total - to)} layers</a>` : "";
  return `<nav class="pager" aria-label="Layer pages"><span class="muted">Layers ${from}–${to} of ${page.total}.</span> ${first} ${next}</nav>`;
}

// ---- patching (Debian images, through /api/v1/patches) ----

// The repository and tag a patch starts from: the first tag of the image
// (of its index, for a platform image).
function patchTarget(img) {
  const t = (img.tags || [])[0];
  if (!t) return null;
  const i = t.lastIndexOf(":");
  return { repository: t.slice(0, i), tag: t.slice(i + 1) };
}

// The jobs started from this page, by image digest: a live redraw of the
// page draws them again instead of losing them.
const patchJobs = {};

function patchSection(target, info) {
  let body;
  if (!info || info.unavailable !== undefined) {
    body = `<p class="muted">Patching is not available on this server${info && info.unavailable ? `: ${esc(info.unavailable)}` : "."}</p>`;
  } else if (!info.configured) {
    body = `<p class="muted" id="patch-off">Patching is not configured: no Debian archive${info.keyring ? "" : " and keyring"} in <code>[patch.debian]</code>, so this image cannot be patched here (see docs/patch.md).</p>`;
  } else if (!info.may_patch) {
    body = `<p class="muted">Patching ${esc(target.repository)} needs push on it.</p>`;
  } else {
    body = `<p>Upgrade the packages with fixable findings in one new layer, pushed beside <b>${esc(target.repository)}:${esc(target.tag)}</b> (archives: ${info.suites.map(esc).join(", ")}).</p>
      <p><button type="button" id="patch-plan">Show the patch plan</button> <button type="button" id="patch-run">Patch</button></p>
      <div id="patch-box" aria-live="polite"></div>`;
  }
  return `<section aria-labelledby="patch-h"><h2 id="patch-h">Patch</h2>${body}</section>`;
}

function drawPatch(digest) {
  const box = document.getElementById("patch-box");
  const j = patchJobs[digest];
  if (!box || !j) return;
  if (j.error) {
    box.innerHTML = `<p class="error" role="alert">${esc(j.error)}</p>`;
    return;
  }
  const job = j.job;
  const what = job.dry_run ? "plan" : "patch";
  if (job.state === "running") {
    box.innerHTML = `<p role="status" class="patch-state">The ${what} of ${esc(job.repository)}:${esc(job.tag)} is running…</p>`;
    return;
  }
  if (job.state === "failed") {
    box.innerHTML = `<p class="error patch-state" role="alert">The ${what} failed: ${esc(job.error || "unknown error")}</p>`;
    return;
  }
  const r = job.result || { platforms: [] };
  const plans = r.platforms.map(p => `<h3>${esc(p.platform || "image")} <span class="muted mono">${short(p.digest)}</span></h3>
    ${p.plan.skipped ? `<p class="patch-skipped">Skipped, left as it is: ${esc(p.plan.skipped)}</p>` : table(`Upgrades for ${p.platform || "the image"}`, ["Package", "From", "To", "Clears", "Why"], p.plan.upgrades.map(u =>
      `<tr><td>${esc(u.package)}</td><td>${esc(u.from || "(new)")}</td><td><b>${esc(u.to)}</b></td><td>${u.clears.length}</td><td>${esc(u.reason)}</td></tr>`), "No upgrade to make.")}
    ${p.plan.refusals.length ? `<ul class="changes">${p.plan.refusals.map(x => `<li><b>${esc(x.package)}</b> ${esc(x.installed)} not upgraded: ${esc(x.reason)}</li>`).join("")}</ul>` : ""}`).join("");
  const done = job.dry_run
    ? `<p class="patch-state">Plan made (nothing was pushed).</p>`
    : r.patched_tag
      ? `<p class="patch-state">Patched: pushed as <b>${esc(r.repository)}:${esc(r.patched_tag)}</b> ${r.patched_digest ? imageLink(r.patched_digest) : ""}</p>`
      : `<p class="patch-state">Nothing was pushed${r.note ? `: ${esc(r.note)}` : "."}</p>`;
  box.innerHTML = done + plans;
}

async function followPatch(digest, id) {
  for (;;) {
    let job;
    try {
      job = await get(`/patches/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e instanceof Stale) return; // the user moved on
      patchJobs[digest] = { id, error: e.message };
      drawPatch(digest);
      return;
    }
    patchJobs[digest] = { id, job };
    drawPatch(digest);
    if (job.state !== "running") return;
    await new Promise(r => setTimeout(r, 1000));
  }
}

function bindPatch(digest, target) {
  drawPatch(digest);
  for (const [id, dryRun] of [["patch-plan", true], ["patch-run", false]]) {
    const b = document.getElementById(id);
    if (!firstBind(b)) continue;
    b.addEventListener("click", async () => {
      if (!dryRun && !confirm(`Patch ${target.repository}:${target.tag}? A new image is pushed beside it; the original stays as it is.`)) return;
      try {
        const job = await post("/patches", { repository: target.repository, tag: target.tag, dry_run: dryRun });
        patchJobs[digest] = { id: job.id, job };
        drawPatch(digest);
        followPatch(digest, job.id);
      } catch (e) {
        patchJobs[digest] = { error: e.message };
        drawPatch(digest);
      }
    });
  }
}

// package → the source package it is built from (OS packages), as the
// findings say.
function sourceOf(findings) {
  const m = {};
  for (const f of findings) if (f.source_package) m[`${f.ecosystem}|${f.package}`] = f.source_package;
  return m;
}

function upgradePlan(plan, src) {
  if (!plan.length) return `<p class="muted">No upgrade clears a finding.</p>`;
  // Grouped by source package: one rebuild of a source package upgrades
  // every binary package built from it.
  const groups = {};
  for (const u of plan) (groups[src[`${u.ecosystem}|${u.package}`] || u.package] ||= []).push(u);
  return table("Upgrade plan, grouped by source package", ["Source package", "Package", "Installed", "Upgrade to", "Clears"],
    Object.entries(groups).flatMap(([src, us]) => us.map((u, i) =>
      `<tr>${i === 0 ? `<th scope="row" rowspan="${us.length}">${esc(src)}</th>` : ""}<td>${esc(u.package)} <span class="muted">${esc(u.ecosystem)}</span></td><td>${esc(u.installed_version)}</td>
        <td><b>${esc(u.upgrade_to)}</b></td><td>${sev(u.highest_severity)} ${u.clears.length} finding${u.clears.length === 1 ? "" : "s"}</td></tr>`)));
}

function exemptDialog() {
  return `<dialog id="exempt-dialog" aria-labelledby="exempt-h"><form id="exempt-form" class="form" method="dialog">
    <h3 id="exempt-h">Exempt a finding</h3>
    <p id="exempt-what" class="full"></p>
    <label for="exempt-scope">Exempt</label><select id="exempt-scope" name="scope">
      <option value="vulnerability">this vulnerability</option><option value="package">every finding in this package</option></select>
    <label for="exempt-repo">In repositories</label><input id="exempt-repo" name="repository">
    <label for="exempt-reason">Reason</label><input id="exempt-reason" name="reason" required>
    <label for="exempt-expires">Until (optional)</label><input id="exempt-expires" name="expires" type="date">
    <button type="submit" value="save">Exempt</button><button type="button" id="exempt-cancel">Cancel</button>
    <p class="error" role="alert"></p></form></dialog>`;
}

function openExempt(f, repo, opener) {
  const dlg = document.getElementById("exempt-dialog");
  const formEl = document.getElementById("exempt-form");
  document.getElementById("exempt-what").innerHTML = `${esc(f.id)} in ${esc(f.package)} ${esc(f.installed_version)}`;
  document.getElementById("exempt-repo").value = repo || "";
  formEl.querySelector(".error").textContent = "";
  document.getElementById("exempt-cancel").onclick = () => { dlg.close(); opener.focus(); };
  formEl.onsubmit = async ev => {
    ev.preventDefault();
    const v = Object.fromEntries(new FormData(formEl));
    const body = { reason: v.reason, repository: v.repository || null, author: session && session.name ? session.name : "dashboard" };
    if (v.scope === "package") body.package = f.package; else body.vulnerability = f.id;
    if (v.expires) body.expires_at = new Date(`${v.expires}T23:59:59Z`).toISOString();
    try {
      await post("/exemptions", body);
      dlg.close();
      announce(`${f.id} is exempt.`);
      await route();
    } catch (e) {
      formEl.querySelector(".error").textContent = e.message;
    }
  };
  dlg.showModal();
  document.getElementById("exempt-reason").focus();
}

// ---- scan queue ----

async function queue() {
  const q = await get("/browse/queue");
  const rows = list => list.map(e => `<tr><td>${imageLink(e.digest)}</td><td>${repoLink(e.repository)}</td><td>${esc(e.platform || "")}</td><td>${esc(e.status)}</td>
    <td>${when(e.queued_at)}</td><td>${e.attempts}</td>${e.error !== undefined && e.status === "failed" ? `<td class="error">${esc(e.error)}</td><td><button type="button" data-act="retry" data-arg="${esc(e.digest)}">Retry</button></td>` : ""}</tr>`);
  const head = ["Image", "Repository", "Platform", "Status", "Queued", "Attempts"];
  paint(`<section aria-labelledby="q-h"><h2 id="q-h">Scan queue</h2>
    <p>${Object.entries(q.counts).map(([k, n]) => `<span class="pill">${esc(k)}: ${n}</span>`).join(" ")}</p>
    <h3>Running</h3>${table("Running assessments", head, rows(q.running), "Nothing running.")}
    <h3>Waiting</h3>${table("Waiting assessments", head, rows(q.pending), "Nothing waiting.")}
    <h3>Failed</h3>${table("Failed assessments", [...head, "Error", ""], rows(q.failed), "No failures.")}</section>`);
  onActions({ retry: d => post(`/images/${encodeURIComponent(d)}/rescan`) });
}

// ---- exemptions ----

async function exemptions() {
  const all = await get("/exemptions");
  paint(`<section aria-labelledby="ex-h"><h2 id="ex-h">Exemptions</h2>
    <p class="muted">Exempt findings do not count toward health or notifications until they expire.</p>
    ${table("Exemptions", ["Vulnerability", "Package", "Repositories", "Severity at or below", "Reason", "By", "Created", "Expires", ""], all.map(e =>
      `<tr><td>${e.vulnerability ? vulnLink(e.vulnerability) : ""}</td><td>${esc(e.package || "")}</td><td>${esc(e.repository || "all")}</td><td>${esc(e.severity || "")}</td>
        <td>${esc(e.reason)}</td><td>${esc(e.author)}</td><td>${when(e.created_at)}</td><td>${when(e.expires_at) || `<span class="muted">never</span>`}</td>
        <td><button type="button" data-act="remove" data-arg="${esc(e.id)}" data-confirm="Remove this exemption?">Remove</button></td></tr>`), "No exemptions.")}</section>
    <section aria-labelledby="ex-new-h"><h2 id="ex-new-h">Add an exemption</h2>${form("add-exemption", [
      ["vulnerability", "Vulnerability id", ""],
      ["package", "Package", ""],
      ["repository", "Repositories (glob)", ""],
      ["reason", "Reason", "required"],
      ["expires", "Until (optional)", "type=\"date\""]], "Add exemption")}</section>`);
  onSubmit("add-exemption", v => post("/exemptions", {
    vulnerability: v.vulnerability || null, package: v.package || null, repository: v.repository || null, reason: v.reason,
    author: session && session.name ? session.name : "dashboard",
    expires_at: v.expires ? new Date(`${v.expires}T23:59:59Z`).toISOString() : null,
  }));
  onActions({ remove: id => del(`/exemptions/${encodeURIComponent(id)}`) });
}

// ---- webhooks ----

async function webhooks(params) {
  const all = await get("/webhooks");
  const shown = params.show || (all[0] && all[0].id);
  const deliveries = shown && all.some(w => w.id === shown) ? await get(`/webhooks/${encodeURIComponent(shown)}/deliveries`) : [];
  paint(`<section aria-labelledby="wh-h"><h2 id="wh-h">Webhooks</h2>
    <p class="muted">Told about images that became unhealthy (signed with HMAC-SHA256 in <code>X-Drydock-Signature</code>).</p>
    ${table("Webhooks", ["URL", "Repositories", "Minimum severity", "Created", ""], all.map(w =>
      `<tr><td class="wrap">${esc(w.url)}</td><td>${esc(w.repository || "all")}</td><td>${esc(w.min_severity || "any")}</td><td>${when(w.created_at)}</td>
        <td><a href="#/webhooks?show=${encodeURIComponent(w.id)}" ${w.id === shown ? `aria-current="true"` : ""}>Delivery log</a>
        <button type="button" data-act="test" data-arg="${esc(w.id)}">Send test</button>
        <button type="button" data-act="remove" data-arg="${esc(w.id)}" data-confirm="Delete this webhook?">Delete</button></td></tr>`), "No webhooks.")}
</section>
    ${shown ? `<section aria-labelledby="dl-h"><h2 id="dl-h">Delivery log</h2>
      ${table("Deliveries", ["Event", "Image", "Repository", "State", "Attempts", "Last status", "Error", "Created", "Delivered"], deliveries.map(d =>
        `<tr><td>${esc(d.event)}</td><td>${d.digest ? imageLink(d.digest) : ""}</td><td>${esc(d.repository || "")}</td><td>${esc(d.state)}</td><td>${d.attempts}</td>
          <td>${esc(d.last_status ?? "")}</td><td class="error">${esc(d.last_error || "")}</td><td>${when(d.created_at)}</td><td>${when(d.delivered_at)}</td></tr>`), "No deliveries yet.")}</section>` : ""}
    <section aria-labelledby="wh-new-h"><h2 id="wh-new-h">Add a webhook</h2>${form("add-webhook", [
      ["url", "URL", "required type=\"url\""],
      ["secret", "Secret (16 characters or more)", "required minlength=\"16\" type=\"password\" autocomplete=\"new-password\""],
      ["repository", "Repositories (glob, optional)", ""],
      ["min_severity", "Minimum severity (optional)", ""]], "Add webhook")}</section>`);
  onSubmit("add-webhook", v => post("/webhooks", {
    url: v.url, secret: v.secret, repository: v.repository || null, min_severity: v.min_severity || null,
  }), async created => {
    location.hash = `#/webhooks?show=${encodeURIComponent(created.id)}`;
    await route();
  });
  onActions({
    remove: id => del(`/webhooks/${encodeURIComponent(id)}`),
    // A signed test event through the normal delivery path; the log
    // shows it (and its retries) as for any other event.
    test: async id => {
      await post(`/webhooks/${encodeURIComponent(id)}/test`);
      if (params.show !== id) location.hash = `#/webhooks?show=${encodeURIComponent(id)}`;
      announce("A test delivery was queued; it shows in the delivery log.");
    },
  });
}

// ---- usage ----

async function usage(params) {
  const now = new Date();
  const month = d => `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, "0")}`;
  const from = params.from || month(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 11, 1)));
  const to = params.to || month(now);
  const u = await get(`/usage${qs({ from, to })}`);
  const perMonth = {};
  for (const r of u.rows) perMonth[r.month] = (perMonth[r.month] || 0) + r.images;
  paint(`<section aria-labelledby="use-h"><h2 id="use-h">Usage</h2>
    <p class="muted">Distinct images assessed, counted once in the month of their first assessment.</p>
    <div class="filters">${select("use-from", "from", "From", monthsBack(24).map(m => [m, m]), from)}${select("use-to", "to", "To", monthsBack(24).map(m => [m, m]), to)}</div>
    ${columnChart(`Images assessed per month, ${from} to ${to}`, Object.entries(perMonth).sort().map(([day, count]) => ({ day, count })))}
    <p>Total: <b>${u.total}</b></p>
    ${table("Usage per month and repository", ["Month", "Repository", "Images"], u.rows.map(r => `<tr><td>${esc(r.month)}</td><td>${repoLink(r.repository)}</td><td>${r.images}</td></tr>`), "No usage in this range.")}</section>`);
  bindFilters("/usage", { from, to, ...params });
}

function monthsBack(n) {
  const now = new Date();
  const out = [];
  for (let i = 0; i < n; i++) {
    const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - i, 1));
    out.push(`${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, "0")}`);
  }
  return out;
}

// ---- settings ----

async function settings() {
  const s = await get("/settings");
  const rows = Object.entries(s).map(([k, v]) => `<tr><th scope="row">${esc(k.replace(/_/g, " "))}</th><td><code class="wrap">${esc(typeof v === "object" ? JSON.stringify(v, null, 1) : v)}</code></td></tr>`);
  paint(`<section aria-labelledby="set-h"><h2 id="set-h">Settings</h2>
    <p class="muted">The configuration this server runs with. Secrets are never shown.</p>
    <div class="scroll"><table><caption>Effective configuration</caption><thead><tr><th scope="col">Setting</th><th scope="col">Value</th></tr></thead><tbody>${rows.join("")}</tbody></table></div></section>`);
}

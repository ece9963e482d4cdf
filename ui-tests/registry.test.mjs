// The registry's pages with real images: an image waits for a
// vulnerability database until one is imported (and its findings appear
// without a reload), findings filters keep focus, an exemption made in the
// page changes the image's health, a webhook's delivery shows in its log,
// the overview links to a vulnerability page, a webhook's test delivery
// arrives signed and is logged, the image page shows its layers (commands
// and packages), offers both SBOM downloads, says which findings VEX takes
// out, and that patching is not configured or (with a loopback archive)
// makes a plan from its button, and every page passes axe,
// fits a 390 px phone without sideways scrolling and is saved as a
// screenshot (target/ui-screenshots/). Last, with more than a page of
// each: an image of 120 layers links to its next layers, and a
// vulnerability in 31 repositories adds them with "More repositories".
//
// Needs (from crates/drydock/tests/dashboard_browser.rs): DRYDOCK_UI_BIN,
// DRYDOCK_UI_DATA, DRYDOCK_UI_VULNDATA (comma-separated zips),
// DRYDOCK_UI_LAYOUT (the test images' OCI layout), DRYDOCK_UI_SCREENSHOTS.
// Webhook before exemption: the delivery needs an unhealthy image.
// These tests run in file order: the first one imports the database.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, createHmac } from "node:crypto";
import { mkdirSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { test } from "node:test";
import { ADMIN, BASE, IMAGE_REPO, assertAccessible, csrfToken, eventually, openBrowser, pageFetch, signIn, visit } from "./lib.mjs";

const BIN = process.env.DRYDOCK_UI_BIN || "";
const DATA = process.env.DRYDOCK_UI_DATA || "";
const VULNDATA = (process.env.DRYDOCK_UI_VULNDATA || "").split(",").filter(Boolean);
const LAYOUT = process.env.DRYDOCK_UI_LAYOUT || "";
const SHOTS = process.env.DRYDOCK_UI_SCREENSHOTS || "";
// "archive": patching is configured with a loopback Debian archive.
const PATCH = process.env.DRYDOCK_UI_PATCH || "";
const ready = Boolean(BIN && DATA && VULNDATA.length && LAYOUT && IMAGE_REPO);

async function shot(page, name) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

async function api(page, path) {
  const r = await pageFetch(page, path, { headers: { Accept: "application/json" } });
  assert.equal(r.status, 200, `GET ${path}: ${JSON.stringify(r.body)}`);
  return r.body;
}

/** The tagged image in `repo` (its browse entry). */
async function imageIn(page, repo) {
  const list = await api(page, `/api/v1/browse/images?repository=${encodeURIComponent(repo)}`);
  assert.equal(list.items.length, 1, `one image in ${repo}`);
  return list.items[0];
}

async function go(page, hash) {
  await page.evaluate(h => { location.hash = h; }, hash);
  await page.waitForFunction(() => document.getElementById("main").getAttribute("aria-busy") !== "true"
    && !document.getElementById("view").textContent.includes("Loading…"));
}

async function signedIn(t) {
  const b = await openBrowser(t);
  await visit(b.page, "/ui/");
  await signIn(b.page, ADMIN);
  return b;
}

test("an image waits for a vulnerability database, then its findings appear without a reload", { skip: !ready && "no registry set up" }, async t => {
  const { page, errors } = await signedIn(t);
  let entry;
  await eventually(async () => {
    entry = await imageIn(page, IMAGE_REPO);
    return entry.state === "waiting_for_database";
  }, "the pushed image to be assessed without a database", 60_000);
  await go(page, `#/image/${encodeURIComponent(entry.digest)}`);
  const verdict = page.locator("#view .verdict");
  await verdict.getByText("waiting for a vulnerability database").waitFor();
  assert.doesNotMatch(await verdict.innerText(), /\bhealthy\b/);
  await shot(page, "image-waiting");
  // The overview counts it as waiting, not healthy.
  await go(page, "#/");
  await page.getByText(/waiting for a vulnerability database/).first().waitFor();
  await go(page, `#/image/${encodeURIComponent(entry.digest)}`);

  // Load the database beside the running server; the page must follow.
  await page.evaluate(() => { window.__sameDocument = true; });
  execFileSync(BIN, ["--data", DATA, "db", "import", ...VULNDATA], {
    env: { ...process.env, RUST_LOG: "warn", DRYDOCK_VULNDB_UPDATE_HOURS: "0" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  await page.locator("#view table caption").getByText("Findings", { exact: true }).waitFor({ timeout: 90_000 });
  assert.equal(await page.evaluate(() => window.__sameDocument), true, "no reload happened");
  assert.match(await verdict.innerText(), /healthy|unhealthy|incomplete/);
  assert.deepEqual(errors, []);
});

test("findings filter by severity and text, keeping focus", { skip: !ready && "no registry set up" }, async t => {
  const { page, errors } = await signedIn(t);
  const entry = await imageIn(page, IMAGE_REPO);
  await eventually(async () => (await imageIn(page, IMAGE_REPO)).summary !== null, "the image's findings", 90_000);
  const enc = encodeURIComponent(entry.digest);
  await go(page, `#/image/${enc}`);
  await page.locator("#view table caption").getByText("Findings", { exact: true }).waitFor();

  // Severity: a multi-select; the box keeps focus after the page is redrawn.
  const box = page.locator("#f-severity-high");
  await box.focus();
  await box.check();
  await page.waitForFunction(() => location.hash.includes("severity=high"));
  await page.waitForFunction(() => document.getElementById("main").getAttribute("aria-busy") !== "true");
  assert.equal(await page.evaluate(() => document.activeElement && document.activeElement.id), "f-severity-high");
  const sevs = await page.locator("#view table tbody tr:not(.detail) .sev").allInnerTexts();
  assert.ok(sevs.every(s => s === "high"), `only high findings: ${sevs}`);
  // "High and above".
  await page.locator("#find-high").selectOption("high+");
  await page.waitForFunction(() => location.hash.includes("severity=high%2B") || location.hash.includes("severity=high+"));
  await page.waitForFunction(() => document.getElementById("main").getAttribute("aria-busy") !== "true");
  const above = await page.locator("#view table tbody tr:not(.detail) .sev").allInnerTexts();
  assert.ok(above.every(s => s === "high" || s === "critical"), `high and above: ${above}`);

  // Text search: typing waits for a pause, then filters on the server.
  const findings = await api(page, `/api/v1/images/${enc}/findings?limit=1`);
  const pkg = findings.findings[0].package;
  await go(page, `#/image/${enc}`);
  const q = page.locator("#find-q");
  await q.focus();
  await q.pressSequentially(pkg, { delay: 10 });
  await page.waitForFunction(p => decodeURIComponent(location.hash).includes(`q=${p}`), pkg);
  await page.waitForFunction(() => document.getElementById("main").getAttribute("aria-busy") !== "true");
  assert.equal(await page.evaluate(() => document.activeElement.id), "find-q", "focus stays in the search field");
  // The findings table's package column (the layers table has rows too).
  const findingsTable = page.locator("#view table").filter({ has: page.locator("caption", { hasText: /^Findings$/ }) });
  const pkgs = await findingsTable.locator("tbody tr:not(.detail) td:nth-child(3)").allInnerTexts();
  assert.ok(pkgs.length > 0 && pkgs.every(p => p.toLowerCase().includes(pkg.toLowerCase())), `search ${pkg}: ${pkgs}`);
  // The detail view: description, links.
  await page.locator("#view button[data-detail]").first().click();
  await page.locator("#view tr.detail:not([hidden])").first().waitFor();
  // A deep link survives a reload.
  const url = page.url();
  await page.reload();
  await page.locator("#find-q").waitFor();
  assert.equal(page.url(), url);
  assert.equal(await page.locator("#find-q").inputValue(), pkg);
  assert.deepEqual(errors, []);
});

test("a webhook made in the page shows its delivery in the log", { skip: !ready && "no registry set up" }, async t => {
  const got = [];
  const receiver = createServer((req, res) => {
    let body = "";
    req.on("data", c => { body += c; });
    req.on("end", () => { got.push({ event: req.headers["x-drydock-event"], signature: req.headers["x-drydock-signature"], body }); res.end("ok"); });
  });
  await new Promise(r => receiver.listen(0, "127.0.0.1", r));
  t.after(() => receiver.close());
  const { page, errors } = await signedIn(t);
  await go(page, "#/webhooks");
  await page.getByLabel("URL").fill(`http://127.0.0.1:${receiver.address().port}/hook`);
  const secret = "a-webhook-secret-of-some-length";
  await page.getByLabel("Secret (16 characters or more)").fill(secret);
  await page.getByRole("button", { name: "Add webhook" }).click();
  await page.getByRole("heading", { name: "Delivery log" }).waitFor();
  // An unhealthy image assessed again is told about (nothing was told
  // before: there was no webhook).
  const bad = await api(page, "/api/v1/browse/images?state=unhealthy");
  assert.ok(bad.items.length > 0, "an unhealthy image");
  const token = await csrfToken(page);
  for (const p of bad.items[0].platforms) {
    const r = await pageFetch(page, `/api/v1/images/${encodeURIComponent(p.digest)}/rescan`, { method: "POST", headers: { "X-CSRF-Token": token } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
  }
  await eventually(() => got.length > 0, "a delivery to the receiver", 90_000);
  // The log shows it without a reload (live refresh).
  await page.locator("#view table").filter({ has: page.locator("caption", { hasText: "Deliveries" }) })
    .getByRole("cell", { name: "delivered" }).first().waitFor({ timeout: 30_000 });
  // "Send test": a signed test event through the same delivery path,
  // listed in the log with its state. First let live refreshes that find
  // nothing changed go by: they once bound the buttons again, and one
  // click then sent two.
  let reads = 0;
  page.on("request", r => { if (new URL(r.url()).pathname === "/api/v1/webhooks") reads++; });
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  await eventually(() => reads >= 2, "two live refreshes of the webhooks page", 60_000);
  const before = got.length;
  await page.getByRole("button", { name: "Send test" }).first().click();
  await eventually(() => got.slice(before).some(g => g.event === "webhook.test"), "the test delivery at the receiver", 30_000);
  await new Promise(r => setTimeout(r, 2000));
  assert.equal(got.slice(before).filter(g => g.event === "webhook.test").length, 1, "one click, one test delivery");
  const test = got.slice(before).find(g => g.event === "webhook.test");
  assert.equal(test.signature, `sha256=${createHmac("sha256", secret).update(test.body).digest("hex")}`, "signed with the webhook's secret");
  const payload = JSON.parse(test.body);
  assert.equal(payload.test, true);
  assert.equal(payload.event, "webhook.test");
  const deliveries = page.locator("#view table").filter({ has: page.locator("caption", { hasText: "Deliveries" }) });
  await deliveries.locator("tbody tr").filter({ hasText: "webhook.test" }).filter({ hasText: "delivered" }).first().waitFor({ timeout: 30_000 });
  await shot(page, "webhooks");
  assert.deepEqual(errors, []);
});

test("exempting a finding from the image page changes its health and says who and until when", { skip: !ready && "no registry set up" }, async t => {
  const { page, errors } = await signedIn(t);
  // The unhealthy image with the fewest violations.
  const all = await api(page, "/api/v1/browse/images?state=unhealthy&sort=findings&order=asc");
  assert.ok(all.items.length > 0, "an unhealthy image");
  const img = all.items[0];
  const enc = encodeURIComponent(img.platforms[0].digest);
  const repo = img.repository;
  const found = (await api(page, `/api/v1/images/${enc}/findings?limit=1000&exempt=false`)).findings;
  const violating = found.filter(f => f.violates_policy);
  assert.ok(violating.length > 0);
  const last = violating[violating.length - 1];
  // Every other violation is exempted through the API (by package, then
  // by vulnerability); the last one through the page.
  const token = await csrfToken(page);
  const post = body => pageFetch(page, "/api/v1/exemptions", {
    method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": token }, body: JSON.stringify(body),
  });
  for (const p of new Set(violating.filter(f => f.package !== last.package).map(f => f.package))) {
    assert.equal((await post({ package: p, repository: repo, reason: "test setup" })).status, 201);
  }
  for (const v of new Set(violating.filter(f => f.package === last.package && f.id !== last.id).map(f => f.id))) {
    assert.equal((await post({ vulnerability: v, package: last.package, repository: repo, reason: "test setup" })).status, 201);
  }
  await go(page, `#/image/${enc}?q=${encodeURIComponent(last.id)}`);
  await page.locator("#view .verdict .state.unhealthy").waitFor();
  const row = page.locator("#view table tbody tr").filter({ hasText: last.id }).first();
  await row.getByRole("button", { name: "Exempt…" }).click();
  const dialog = page.getByRole("dialog");
  await dialog.waitFor();
  await assertAccessible(page, "the exemption dialog");
  await dialog.getByLabel("Reason").fill("not reachable in this service");
  await dialog.getByLabel("Until (optional)").fill("2099-12-31");
  await dialog.getByRole("button", { name: "Exempt", exact: true }).click();
  await page.locator("#view .verdict .state.healthy").waitFor();
  // The exempt pill names the reason, the author and the expiry.
  await go(page, `#/image/${enc}?q=${encodeURIComponent(last.id)}&exempt=true`);
  const pill = page.locator("#view .pill.exempt").first();
  const title = await pill.getAttribute("title");
  assert.match(title, /not reachable in this service/);
  assert.match(title, new RegExp(ADMIN.name));
  assert.match(title, /2099-12-31/);
  assert.doesNotMatch(title, /[0-9a-f]{8}-[0-9a-f]{4}-/, "no UUID");
  await shot(page, "image-exempted");
  // The exemptions page lists it.
  await go(page, "#/exemptions");
  await page.getByRole("cell", { name: "not reachable in this service" }).waitFor();
  assert.deepEqual(errors, []);
});

test("the overview links to a vulnerability page", { skip: !ready && "no registry set up" }, async t => {
  const { page, errors } = await signedIn(t);
  await go(page, "#/");
  const table = page.locator("#view table").filter({ has: page.locator("caption", { hasText: "Most widespread vulnerabilities" }) });
  const link = table.getByRole("link").first();
  await link.waitFor();
  const id = await link.innerText();
  await link.click();
  await page.getByRole("heading", { name: new RegExp(`^${id.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`) }).waitFor();
  assert.match(await page.title(), new RegExp(id));
  const affected = page.locator("#view table").filter({ has: page.locator("caption", { hasText: "Affected repositories and tags" }) });
  const repos = await affected.locator("tbody tr td:first-child").allInnerTexts();
  assert.ok(repos.length > 0);
  assert.equal(new Set(repos).size, repos.length, "each repository once");
  assert.deepEqual(errors, []);
});

/** The platform image of the Python test image (two layers), or of IMAGE_REPO. */
async function layeredImage(page) {
  const py = await api(page, "/api/v1/browse/images?repository=team-a%2Fpy");
  const entry = py.items[0] || await imageIn(page, IMAGE_REPO);
  return entry.platforms[0].digest;
}

test("the image page shows its layers, the command and the packages of each", { skip: !ready && "no registry set up" }, async t => {
  const { page, errors } = await signedIn(t);
  const digest = await layeredImage(page);
  const layers = await api(page, `/api/v1/images/${encodeURIComponent(digest)}/layers`);
  assert.ok(layers.total >= 1);
  await go(page, `#/image/${encodeURIComponent(digest)}`);
  const table = page.locator("#view table").filter({ has: page.locator("caption", { hasText: /^Layers$/ }) });
  await table.waitFor();
  const rows = table.locator("tbody tr");
  assert.equal(await rows.count(), layers.total);
  // The first layer is the debootstrap root file system, with its Debian
  // packages; in the Python image the second is the pip install (the
  // "umoci config" step between them made no layer).
  assert.match(await rows.nth(0).innerText(), /debootstrap/);
  assert.doesNotMatch(await table.innerText(), /umoci config/);
  const summary = rows.nth(0).locator("summary");
  assert.match(await summary.innerText(), /^\d+ packages?$/);
  assert.ok(Number((await summary.innerText()).split(" ")[0]) > 10, "the base layer adds the Debian packages");
  await summary.click();
  const first = layers.layers[0].packages[0];
  await rows.nth(0).getByText(first.name, { exact: false }).first().waitFor();
  if (layers.total > 1) {
    assert.match(await rows.nth(1).innerText(), /pip install/);
    assert.ok(layers.layers[1].packages.every(p => p.ecosystem === "pypi"), "the pip layer adds Python packages");
  }
  await assertAccessible(page, "the layers section");
  await shot(page, "image-layers");
  assert.deepEqual(errors, []);
});

test("the image page offers its SBOM as CycloneDX and SPDX downloads", { skip: !ready && "no registry set up" }, async t => {
  const { page, errors } = await signedIn(t);
  const digest = await layeredImage(page);
  const enc = encodeURIComponent(digest);
  const inventory = await api(page, `/api/v1/images/${enc}/packages?limit=1`);
  await go(page, `#/image/${enc}`);
  const cdx = page.getByRole("link", { name: "CycloneDX 1.6" });
  const spdx = page.getByRole("link", { name: "SPDX 2.3" });
  await cdx.waitFor();
  // A real download through the link (the session cookie goes along).
  const [download] = await Promise.all([page.waitForEvent("download"), cdx.click()]);
  assert.match(download.suggestedFilename(), /\.cdx\.json$/);
  const bom = JSON.parse(await new Promise((resolve, reject) => {
    download.createReadStream().then(stream => {
      let text = "";
      stream.on("data", c => { text += c; });
      stream.on("end", () => resolve(text));
      stream.on("error", reject);
    }, reject);
  }));
  assert.equal(bom.bomFormat, "CycloneDX");
  assert.equal(bom.specVersion, "1.6");
  assert.equal(bom.components.filter(c => c.type === "library").length, inventory.total);
  const doc = await pageFetch(page, await spdx.getAttribute("href"));
  assert.equal(doc.status, 200);
  assert.equal(doc.body.spdxVersion, "SPDX-2.3");
  assert.equal(doc.body.packages.filter(p => p.SPDXID.startsWith("SPDXRef-Package-")).length, inventory.total);
  assert.deepEqual(errors, []);
});

test("a finding VEX takes out says so, with the author, justification and document", { skip: !ready && "no registry set up" }, async t => {
  const { page, errors } = await signedIn(t);
  const digest = await layeredImage(page);
  const enc = encodeURIComponent(digest);
  const found = (await api(page, `/api/v1/images/${enc}/findings?limit=1000&exempt=false`)).findings;
  const target = found.find(f => !f.not_affected_per_vex);
  assert.ok(target, "a finding to speak of");
  const token = await csrfToken(page);
  const docId = `https://vex.example/drydock-ui-test/${Date.now()}`;
  const r = await pageFetch(page, "/api/v1/vex", {
    method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": token },
    body: JSON.stringify({
      "@context": "https://openvex.dev/ns/v0.2.0", "@id": docId, author: "Platform Security",
      timestamp: "2026-01-10T10:00:00Z", version: 1,
      statements: [{ vulnerability: { name: target.id }, products: [{ "@id": digest }], status: "not_affected", justification: "vulnerable_code_not_in_execute_path" }],
    }),
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  await go(page, `#/image/${enc}?q=${encodeURIComponent(target.id)}`);
  const row = page.locator("#view table tbody tr:not(.detail)").filter({ hasText: target.id }).first();
  const pill = row.locator(".pill.vex");
  await pill.waitFor();
  assert.match(await pill.innerText(), /not affected per VEX/);
  assert.match(await pill.innerText(), /Platform Security/);
  const title = await pill.getAttribute("title");
  assert.match(title, /vulnerable code is not in the execute path/);
  assert.ok(title.includes(docId), title);
  assert.equal(await row.locator(".pill.bad").count(), 0, "it no longer violates the policy");
  await row.locator("button[data-detail]").click();
  const detail = page.locator("#view tr.detail:not([hidden])").first();
  await detail.getByText("Not affected per VEX").waitFor();
  assert.match(await detail.innerText(), /Platform Security/);
  assert.ok((await detail.innerText()).includes(docId));
  await assertAccessible(page, "a finding cleared by VEX");
  await shot(page, "image-vex");
  assert.deepEqual(errors, []);
});

test("the image page's patch section: not configured it says so, configured its plan button asks the archive", { skip: !ready && "no registry set up" }, async t => {
  const { page, errors } = await signedIn(t);
  const entry = await imageIn(page, IMAGE_REPO);
  const info = await api(page, `/api/v1/patches?repository=${encodeURIComponent(IMAGE_REPO)}`);
  assert.equal(info.configured, Boolean(PATCH));
  assert.equal(info.may_patch, true, "the admin may patch");
  await go(page, `#/image/${encodeURIComponent(entry.digest)}`);
  await page.getByRole("heading", { name: "Patch" }).waitFor();
  if (!PATCH) {
    assert.match(await page.locator("#patch-off").innerText(), /not configured/);
    assert.equal(await page.getByRole("button", { name: "Patch" }).count(), 0);
    assert.deepEqual(errors, []);
    return;
  }
  assert.equal(await page.locator("#patch-off").count(), 0);
  assert.match(await page.locator("#view").innerText(), /archives: bookworm/);
  const tag = entry.tags.find(x => x.startsWith(`${IMAGE_REPO}:`)).slice(IMAGE_REPO.length + 1);
  // The request the button sends: a dry run of this tag.
  const sent = page.waitForRequest(r => r.method() === "POST" && new URL(r.url()).pathname === "/api/v1/patches");
  await page.getByRole("button", { name: "Show the patch plan" }).click();
  const body = JSON.parse((await sent).postData());
  assert.deepEqual(body, { repository: IMAGE_REPO, tag, dry_run: true });
  // The job is followed until it ends: a plan, nothing pushed.
  const state = page.locator("#patch-box .patch-state");
  await eventually(async () => {
    const text = (await state.count()) ? await state.first().innerText() : "";
    return !/running/.test(text) && text !== "";
  }, "the plan to end", 120_000);
  assert.equal((await state.first().innerText()).trim(), "Plan made (nothing was pushed).");
  const box = await page.locator("#patch-box").innerText();
  assert.match(box, /Upgrade|No upgrade to make/, box);
  assert.equal(await page.locator("#patch-box .error").count(), 0);
  // Nothing was pushed: still the one tagged image in the repository.
  assert.equal((await api(page, `/api/v1/browse/tags?repository=${encodeURIComponent(IMAGE_REPO)}`)).items.length, 1);
  await assertAccessible(page, "the patch plan");
  await shot(page, "image-patch-plan");
  // An index platform the archive has no packages for is skipped with the
  // reason (patch's plan.skipped): the job as the server answers it, with
  // such a platform added, is drawn with the reason instead of a table.
  const why = "the configured archives carry no packages for arm64";
  await page.route(u => /^\/api\/v1\/patches\/[^/]+$/.test(new URL(u).pathname), async route => {
    const response = await route.fetch();
    const job = await response.json();
    if (job.result) job.result.platforms.push({ platform: "linux/arm64", digest: entry.digest, plan: { upgrades: [], refusals: [], skipped: why } });
    await route.fulfill({ response, json: job });
  });
  await page.getByRole("button", { name: "Show the patch plan" }).click();
  await eventually(async () => (await page.locator("#patch-box .patch-skipped").count()) > 0, "the skipped platform", 120_000);
  assert.equal((await page.locator("#patch-box .patch-skipped").innerText()).trim(), `Skipped, left as it is: ${why}`);
  assert.match(await page.locator("#patch-box").innerText(), /linux\/arm64/);
  await page.unrouteAll();
  assert.deepEqual(errors, []);
});

test("every page: a title, no serious axe violation, no sideways scroll at 390 px, a screenshot", { skip: !ready && "no registry set up" }, async t => {
  const { page, errors } = await signedIn(t);
  const img = await imageIn(page, IMAGE_REPO);
  const vulns = await api(page, "/api/v1/vulnerabilities?limit=1");
  const pages = [
    ["overview", "#/", /Overview/],
    ["repositories", "#/repositories", /Repositories/],
    ["repository", `#/repository/${encodeURIComponent(IMAGE_REPO)}`, new RegExp(IMAGE_REPO)],
    ["images", "#/images", /Images/],
    ["untagged", "#/images?untagged=true", /Images/],
    ["image", `#/image/${encodeURIComponent(img.digest)}`, /Image/],
    ["image-layered", `#/image/${encodeURIComponent(await layeredImage(page))}`, /Image/],
    ["vulnerabilities", "#/vulnerabilities?severity=high%2B", /Vulnerabilities/],
    ["vulnerability", `#/vulnerability/${encodeURIComponent(vulns.items[0].id)}`, new RegExp(vulns.items[0].id)],
    ["queue", "#/queue", /Scan queue/],
    ["exemptions", "#/exemptions", /Exemptions/],
    ["webhooks", "#/webhooks", /Webhooks/],
    ["usage", "#/usage", /Usage/],
    ["settings", "#/settings", /Settings/],
  ];
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: width === 390 ? 844 : 900 });
    for (const [name, hash, title] of pages) {
      await go(page, hash);
      assert.match(await page.title(), title, `title of ${name}`);
      const shown = await page.locator("#view .error[role=alert], #view .warn").allInnerTexts();
      assert.ok(!shown.some(t => /could not|error|not found|failed/i.test(t)), `${name} shows an error: ${shown}`);
      if (width === 390) {
        const sideways = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
        assert.ok(sideways <= 0, `${name} scrolls sideways by ${sideways}px at 390 px`);
      } else {
        await assertAccessible(page, name);
      }
      await shot(page, `${name}-${width}`);
    }
  }
  // The skip link goes to the content.
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Skip to content");
  // Compressed answers, and no page reads more than 1 MB.
  const sizes = await page.evaluate(() => performance.getEntriesByType("resource").map(e => [e.name, e.transferSize, e.decodedBodySize]));
  for (const [name, , decoded] of sizes) assert.ok(decoded < 1_000_000, `${name}: ${decoded} bytes`);
  assert.deepEqual(errors, []);
});

// ---- more than one page: pushed over /v2/ as the administrator ----

const MANIFEST_TYPES = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");

function v2(method, path, { body, type, accept } = {}) {
  const headers = { Authorization: "Basic " + Buffer.from(`${ADMIN.name}:${ADMIN.password}`).toString("base64") };
  if (type) headers["Content-Type"] = type;
  if (accept) headers.Accept = accept;
  return fetch(`${BASE}/v2/${path}`, { method, headers, body, redirect: "manual" });
}

const sha256 = b => "sha256:" + createHash("sha256").update(b).digest("hex");

/** A tar of one file (ustar header, data, end-of-archive blocks). */
function tarOf(name, data) {
  const h = Buffer.alloc(512);
  h.write(name, 0);
  h.write("0000644\0", 100);
  h.write("0000000\0", 108);
  h.write("0000000\0", 116);
  h.write(data.length.toString(8).padStart(11, "0") + "\0", 124);
  h.write("00000000000\0", 136);
  h.write("        ", 148);
  h.write("0", 156);
  h.write("ustar\0", 257);
  h.write("00", 263);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, "0") + "\0 ", 148);
  return Buffer.concat([h, data, Buffer.alloc((512 - (data.length % 512)) % 512), Buffer.alloc(1024)]);
}

async function putBlob(repo, bytes) {
  const d = sha256(bytes);
  const r = await v2("POST", `${repo}/blobs/uploads/?digest=${d}`, { body: bytes, type: "application/octet-stream" });
  assert.equal(r.status, 201, `upload into ${repo}: ${r.status} ${await r.text()}`);
  return d;
}

/** An image of `n` one-file layers, each made by `RUN step <i>`; its digest. */
async function pushTall(repo, tag, n) {
  const layers = [];
  for (let i = 0; i < n; i++) {
    const tar = tarOf(`step/${i}`, Buffer.from(`layer ${i}\n`));
    layers.push({ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: await putBlob(repo, tar), size: tar.length });
  }
  const config = Buffer.from(JSON.stringify({
    architecture: "amd64", os: "linux",
    rootfs: { type: "layers", diff_ids: layers.map(l => l.digest) },
    history: layers.map((_, i) => ({ created_by: `/bin/sh -c echo step ${i}` })),
  }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: await putBlob(repo, config), size: config.length },
    layers,
  }));
  const r = await v2("PUT", `${repo}/manifests/${tag}`, { body: manifest, type: "application/vnd.oci.image.manifest.v1+json" });
  assert.equal(r.status, 201, `PUT ${repo}:${tag}: ${await r.text()}`);
  return sha256(manifest);
}

/** `from`'s manifest `ref` (an index with its platforms) into `to`, blobs mounted. */
async function copyManifest(from, to, ref) {
  const r = await v2("GET", `${from}/manifests/${ref}`, { accept: MANIFEST_TYPES });
  assert.equal(r.status, 200, `GET ${from}:${ref}`);
  const type = r.headers.get("content-type");
  const bytes = Buffer.from(await r.arrayBuffer());
  const m = JSON.parse(bytes);
  for (const child of m.manifests || []) await copyManifest(from, to, child.digest);
  for (const blob of [m.config, ...(m.layers || [])].filter(Boolean)) {
    const mount = await v2("POST", `${to}/blobs/uploads/?mount=${blob.digest}&from=${from}`);
    assert.equal(mount.status, 201, `mount ${blob.digest} into ${to}: ${mount.status}`);
  }
  const put = await v2("PUT", `${to}/manifests/${ref}`, { body: bytes, type });
  assert.equal(put.status, 201, `PUT ${to}:${ref}: ${await put.text()}`);
}

test("an image with more layers than a page links to its next layers", { skip: !ready && "no registry set up" }, async t => {
  const { page, errors } = await signedIn(t);
  const digest = await pushTall("team-b/tall", "1", 120);
  await go(page, `#/image/${encodeURIComponent(digest)}`);
  const table = page.locator("#view table").filter({ has: page.locator("caption", { hasText: /^Layers$/ }) });
  await table.waitFor();
  assert.equal(await table.locator("tbody tr").count(), 100, "the first page is 100 layers");
  assert.match(await page.getByRole("navigation", { name: "Layer pages" }).innerText(), /Layers 1–100 of 120/);
  const next = page.locator("#layers-next");
  assert.equal((await next.innerText()).trim(), "Next 20 layers");
  await next.click();
  await page.getByText("Layers 101–120 of 120").waitFor();
  await page.waitForFunction(() => document.getElementById("main").getAttribute("aria-busy") !== "true");
  const rows = table.locator("tbody tr");
  assert.equal(await rows.count(), 20);
  assert.match(await rows.nth(0).innerText(), /^101\b[\s\S]*RUN echo step 100/);
  assert.match(await rows.nth(19).innerText(), /^120\b[\s\S]*RUN echo step 119/);
  assert.equal(await page.locator("#layers-next").count(), 0, "no next page after the last");
  // A deep link to the second page survives a reload.
  assert.match(page.url(), /lcursor=/);
  await page.reload();
  await page.getByText("Layers 101–120 of 120").waitFor();
  await assertAccessible(page, "the second page of layers");
  await shot(page, "image-layers-page-2");
  await page.getByRole("link", { name: "First layers" }).click();
  await page.getByText("Layers 1–100 of 120").waitFor();
  assert.deepEqual(errors, []);
});

test("a vulnerability in more repositories than a page adds them with More repositories", { skip: !ready && "no registry set up" }, async t => {
  const { page, errors } = await signedIn(t);
  const copies = Array.from({ length: 30 }, (_, i) => `spread/r${String(i).padStart(2, "0")}`);
  for (const to of copies) await copyManifest(IMAGE_REPO, to, "v1");
  // The copies' verdicts are the original's (same digest), their tags are
  // read again within seconds.
  let id, v;
  await eventually(async () => {
    id = (await api(page, "/api/v1/vulnerabilities?sort=images&limit=1")).items[0].id;
    v = await api(page, `/api/v1/vulnerabilities/${encodeURIComponent(id)}?limit=25`);
    return v.affected_total > 30;
  }, "the copies to count as affected repositories", 60_000);
  await go(page, `#/vulnerability/${encodeURIComponent(id)}`);
  const affected = page.locator("#view table").filter({ has: page.locator("caption", { hasText: "Affected repositories and tags" }) });
  const rows = affected.locator("tbody tr");
  assert.equal(await rows.count(), 25);
  const count = page.locator("#aff-count");
  assert.equal(await count.innerText(), `25 of ${v.affected_total} repositories`);
  const more = page.getByRole("button", { name: "More repositories" });
  while (await more.isVisible()) {
    const before = await rows.count();
    await more.click();
    await eventually(async () => (await rows.count()) > before, "the next repositories to be added", 10_000);
  }
  assert.equal(await rows.count(), v.affected_total, "every repository once shown");
  const names = await affected.locator("tbody tr td:first-child").allInnerTexts();
  assert.equal(new Set(names).size, names.length, "each repository once");
  for (const to of copies) assert.ok(names.includes(to), `${to} listed`);
  assert.equal(await count.innerText(), "");
  await assertAccessible(page, "the vulnerability page with every repository");
  await shot(page, "vulnerability-more-repositories");
  assert.deepEqual(errors, []);
});

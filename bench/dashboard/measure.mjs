// Dashboard bench driver: signs in to a running drydock in headless
// Chromium and loads each measured page several times from scratch
// (browser cache off, so every asset and API answer is fetched again),
// recording the time from navigation start until the page is drawn and
// the bytes that crossed the wire (compressed bodies plus headers).
//
// "Drawn" is the dashboard's own signal: route() marks <main> aria-busy
// while it fetches and removes the mark once the page is painted (errors
// are painted too, so an error on the page fails the run).
//
//   node bench/dashboard/measure.mjs   (environment below; run.sh sets it)
//     DRYDOCK_BENCH_URL       http://127.0.0.1:PORT
//     DRYDOCK_BENCH_USER      DRYDOCK_BENCH_PASSWORD
//     DRYDOCK_BENCH_RUNS      loads per page (default 15)
//     DRYDOCK_BENCH_FIRST_ONLY  set: time only the first read, print
//                             { first_read_ms } and stop (after a restart)
//     DRYDOCK_UI_CHROMIUM     the browser (default /usr/bin/chromium)
//
// Prints one JSON object: { pages: [{ page, path, runs: [{ ms, bytes, requests }] }] }.

import { createRequire } from "node:module";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
// playwright-core from the browser tests' node_modules (npm ci --prefix ui-tests).
const require = createRequire(join(root, "ui-tests", "package.json"));
const { chromium } = require("playwright-core");

const BASE = (process.env.DRYDOCK_BENCH_URL || "").replace(/\/$/, "");
const USER = process.env.DRYDOCK_BENCH_USER;
const PASSWORD = process.env.DRYDOCK_BENCH_PASSWORD;
const RUNS = Number(process.env.DRYDOCK_BENCH_RUNS || 15);
if (!BASE || !USER || !PASSWORD) {
  console.error("set DRYDOCK_BENCH_URL, DRYDOCK_BENCH_USER and DRYDOCK_BENCH_PASSWORD (bench/dashboard/run.sh does)");
  process.exit(2);
}

const profile = mkdtempSync(join(tmpdir(), "drydock-bench-ui-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.DRYDOCK_UI_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1280, height: 800 },
});
context.setDefaultTimeout(60_000);
const page = context.pages()[0] || (await context.newPage());
const pageErrors = [];
page.on("pageerror", e => pageErrors.push(e.message));

try {
  // Sign in once; the session cookie serves every later load.
  await page.goto(BASE + "/ui/");
  await page.getByLabel("User name").fill(USER);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#user").getByRole("button", { name: "Sign out" }).waitFor();

  // What to open: the vulnerability affecting the most images, the
  // worst single-platform image, and the index first in the list.
  const api = async path => page.evaluate(async p => {
    const r = await fetch("/api/v1" + p, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!r.ok) throw new Error(`${p}: ${r.status}`);
    return r.json();
  }, path);
  // The first read after the server started: a judging of every image
  // without a kept one, the kept one after a restart.
  const t0 = Date.now();
  const vulns = await api("/vulnerabilities?sort=images&limit=1");
  const firstMs = Date.now() - t0;
  if (process.env.DRYDOCK_BENCH_FIRST_ONLY) {
    console.log(JSON.stringify({ first_read_ms: firstMs }));
    process.exit(0);
  }
  const worst = await api("/browse/images?sort=severity&limit=50");
  const single = worst.items.find(i => i.kind === "image");
  const index = (await api("/browse/images?q=multi-&limit=50")).items.find(i => i.kind === "index");
  const overview = await api("/overview");

  const pages = [
    { page: "overview", path: "#/" },
    { page: "images list", path: "#/images" },
    { page: "vulnerabilities list", path: "#/vulnerabilities" },
    { page: "vulnerability page", path: `#/vulnerability/${encodeURIComponent(vulns.items[0].id)}`, note: `${vulns.items[0].id}, ${vulns.items[0].images} images` },
    { page: "image page", path: `#/image/${encodeURIComponent(single.digest)}`, note: `${single.summary ? single.summary.total : 0} findings` },
    { page: "image page (index)", path: `#/image/${encodeURIComponent(index.digest)}`, note: `${index.platforms.length} platforms` },
  ];

  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
  let counting = false;
  let bytes = 0;
  let requests = 0;
  cdp.on("Network.loadingFinished", e => {
    if (counting) { bytes += e.encodedDataLength; requests++; }
  });

  const results = [];
  for (const p of pages) {
    const runs = [];
    let warmup = 0;
    // One unmeasured load first: the server's read model may be cold.
    for (let i = 0; i <= RUNS; i++) {
      await page.goto("about:blank");
      bytes = 0;
      requests = 0;
      counting = true;
      await page.goto(BASE + "/ui/" + p.path, { waitUntil: "commit" });
      const ms = await page.waitForFunction(() => {
        const main = document.getElementById("main");
        const view = document.getElementById("view");
        if (!main || !view || main.hasAttribute("aria-busy")) return false;
        if (view.textContent.includes("Loading…") || !view.firstElementChild) return false;
        return performance.now();
      }, null, { polling: "raf", timeout: 60_000 }).then(h => h.jsonValue());
      // Anything the page still fetches right after drawing counts too.
      await page.waitForTimeout(300);
      counting = false;
      // Forms keep an empty alert for their own errors; only text counts.
      const error = await page.evaluate(() => [...document.querySelectorAll("#view .error[role=alert]")]
        .map(e => e.textContent.trim()).filter(Boolean).join("; "));
      if (error) throw new Error(`${p.page}: ${error}`);
      if (await page.locator("#login-username").count()) throw new Error(`${p.page}: the session ended`);
      if (i > 0) runs.push({ ms: Math.round(ms), bytes, requests });
      else warmup = Math.round(ms);
    }
    results.push({ ...p, runs, warmup });
    console.error(`${p.page}: ${runs.map(r => r.ms).join(" ")} ms`);
  }
  if (pageErrors.length) throw new Error(`script errors: ${pageErrors.join("; ")}`);
  console.log(JSON.stringify({ first_read_ms: firstMs, images_total: overview.images_total, untagged: overview.untagged, repositories: overview.repositories, pages: results }));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}

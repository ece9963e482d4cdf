// Shared helpers of the dashboard's browser tests: where the server is, who
// signs in, a fresh headless Chromium per scenario, and axe-core.
//
// The server and its accounts are set up by
// crates/drydock/tests/dashboard_browser.rs, which passes them in:
//   DRYDOCK_UI_URL              http://127.0.0.1:PORT (no trailing slash)
//   DRYDOCK_UI_ADMIN_USER       DRYDOCK_UI_ADMIN_PASSWORD
//   DRYDOCK_UI_READER_USER      DRYDOCK_UI_READER_PASSWORD
//   DRYDOCK_UI_IMAGE            optional: a repository the reader may pull
//   DRYDOCK_UI_CHROMIUM         optional: the browser (default /usr/bin/chromium)

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

function need(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set: run these tests through \`cargo test -p drydock --test dashboard_browser\``);
  }
  return v;
}

export const BASE = need("DRYDOCK_UI_URL").replace(/\/$/, "");
export const ADMIN = { name: need("DRYDOCK_UI_ADMIN_USER"), password: need("DRYDOCK_UI_ADMIN_PASSWORD") };
export const READER = { name: need("DRYDOCK_UI_READER_USER"), password: need("DRYDOCK_UI_READER_PASSWORD") };
export const IMAGE_REPO = process.env.DRYDOCK_UI_IMAGE || "";

const CHROMIUM = process.env.DRYDOCK_UI_CHROMIUM || "/usr/bin/chromium";

// Debian's Chromium, headless, with nothing that reaches beyond loopback.
const ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * A fresh browser with its own, new user data directory (so no cookie
 * or cache of another scenario is there). Returns { context, page, errors,
 * dialogs, close }; `errors` collects uncaught exceptions of the page's
 * script, `dialogs` the dialogs it opened.
 */
export async function openBrowser(t) {
  const profile = mkdtempSync(join(tmpdir(), "drydock-ui-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 800 },
    // axe is injected as an inline script, which the dashboard's CSP
    // rightly forbids; the policy itself is checked by the web crate's tests.
    bypassCSP: true,
  });
  context.setDefaultTimeout(30_000);
  const page = context.pages()[0] || (await context.newPage());
  const errors = [];
  page.on("pageerror", e => errors.push(e.message));
  // Dialogs (confirm revoke, delete; alerts) are answered yes and kept.
  const dialogs = [];
  page.on("dialog", d => {
    dialogs.push(`${d.type()}: ${d.message()}`);
    return d.accept();
  });
  const close = async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  };
  if (t) t.after(close);
  return { context, page, errors, dialogs, close };
}

/** Open the dashboard and wait for its script to settle on a view. */
export async function visit(page, path = "/ui/") {
  await page.goto(BASE + path);
  await page.waitForFunction(() => !document.getElementById("view").textContent.includes("Loading…"));
}

/** Sign in through the form; waits until the header names the user and offers to sign out. */
export async function signIn(page, who) {
  await page.getByLabel("User name").fill(who.name);
  await page.getByLabel("Password").fill(who.password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#user").getByRole("button", { name: "Sign out" }).waitFor();
  assert.equal(await page.locator("#user").getByText(who.name, { exact: true }).first().innerText(), who.name);
}

/** fetch() from inside the page (its cookies, its origin): { status, body }. */
export async function pageFetch(page, path, init = {}) {
  return page.evaluate(async ([path, init]) => {
    const r = await fetch(path, { credentials: "same-origin", ...init });
    const text = await r.text();
    let body = null;
    try { body = JSON.parse(text); } catch { body = text; }
    return { status: r.status, body };
  }, [path, init]);
}

/** The session's CSRF token, as the page can read it after a reload. */
export async function csrfToken(page) {
  const r = await pageFetch(page, "/api/v1/auth/session", { headers: { Accept: "application/json" } });
  assert.equal(r.status, 200, "signed in");
  assert.ok(r.body.csrf, "the session answer carries a CSRF token");
  return r.body.csrf;
}

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

/**
 * Run axe-core on the page as it is; fail on serious or critical
 * violations, naming each rule and where it hit.
 */
export async function assertAccessible(page, what) {
  if (!(await page.evaluate(() => typeof window.axe === "object"))) {
    await page.addScriptTag({ content: AXE_SOURCE });
  }
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = result.violations.filter(v => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(
    bad.map(v => `${v.impact} ${v.id}: ${v.help} at ${v.nodes.map(n => n.target.join(" ")).join(", ")}`),
    [],
    `accessibility violations on ${what}`,
  );
}

/** Wait until `check()` is true (polled), or fail saying `what`. The
 * default is generous: CI runs these on two loaded cores, and a wait
 * ends as soon as the check holds. */
export async function eventually(check, what, timeoutMs = 60_000) {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    assert.ok(Date.now() < end, `timed out waiting for ${what}`);
    await new Promise(r => setTimeout(r, 50));
  }
}

/** A name unique to this run. */
export function unique(prefix) {
  return `${prefix}-${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
}

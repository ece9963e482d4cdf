// An administrator's dashboard: the header, the admin pages, a robot's
// life (secret shown once, revoked, in the audit log), CSRF on writes,
// and accessibility of every admin page.

import assert from "node:assert/strict";
import { test } from "node:test";
import { ADMIN, assertAccessible, csrfToken, eventually, openBrowser, pageFetch, signIn, unique, visit } from "./lib.mjs";

const ADMIN_PAGES = [
  ["Users", "#/users", "Users"],
  ["Robots", "#/robots", "Robot accounts"],
  ["Access", "#/bindings", "Bindings"],
  ["Audit log", "#/audit", "Audit log"],
];

/** Follow a navigation link and wait for its page's heading. */
async function open(page, link, heading) {
  await page.getByRole("navigation").getByRole("link", { name: link, exact: true }).click();
  await page.getByRole("heading", { name: heading, exact: true }).waitFor();
}

/** The robots table's row for `username`. */
const robotRow = (page, username) =>
  page.locator("#view table tr").filter({ has: page.getByRole("cell", { name: username, exact: true }) });

test("the administrator signs in and sees the admin pages", async t => {
  const { page, errors } = await openBrowser(t);
  await visit(page, "/ui/");
  const before = await page.title();
  await signIn(page, ADMIN);

  const user = page.locator("#user");
  assert.match(await user.innerText(), new RegExp(`\\b${ADMIN.name}\\b`));
  assert.ok(await user.locator(".pill").getByText("admin", { exact: true }).isVisible(), "an admin badge");
  // The sign-in heading is gone and the title follows the page shown.
  assert.equal(await page.getByRole("heading", { name: "Sign in to drydock" }).count(), 0);
  const after = await page.title();
  assert.notEqual(after, before, "the title changes once signed in");
  assert.match(after, /overview/i);

  for (const [link, hash, heading] of ADMIN_PAGES) {
    const a = page.getByRole("navigation").getByRole("link", { name: link, exact: true });
    assert.ok(await a.isVisible(), `${link} is in the navigation`);
    await open(page, link, heading);
    assert.ok(page.url().endsWith(hash), `${link} opens ${hash}`);
    assert.match(await page.title(), new RegExp(link, "i"), `the title names ${link}`);
    assert.ok(
      await page.getByRole("navigation").getByRole("link", { name: link, exact: true }).getAttribute("aria-current"),
      `${link} is marked as the current page`,
    );
  }
  // The users page lists the administrator, without a button to remove themself.
  await open(page, "Users", "Users");
  const me = page.locator("#view table tr").filter({ has: page.getByRole("cell", { name: ADMIN.name, exact: true }) });
  assert.equal(await me.count(), 1);
  assert.equal(await me.getByRole("button", { name: "Remove" }).count(), 0);
  assert.deepEqual(errors, []);
});

test("a robot's secret is shown once; revoking it shows in the list and the audit log", async t => {
  const { page, errors } = await openBrowser(t);
  await visit(page, "/ui/#/robots");
  await signIn(page, ADMIN);
  await page.getByRole("heading", { name: "Robot accounts" }).waitFor();

  const name = unique("ci");
  const username = `robot$${name}`;
  const form = page.locator("#add-robot");
  await form.getByLabel("Name").fill(name);
  await form.getByLabel("Description").fill("browser test");
  await form.getByLabel("Repository pattern").fill("team-a/*");
  await form.getByLabel("Actions").fill("pull, push");
  await form.getByRole("button", { name: "Create robot" }).click();

  // The secret, once, in a status region.
  const shown = page.getByRole("status").filter({ hasText: username });
  await shown.waitFor();
  const secret = (await shown.locator("code").first().innerText()).trim();
  assert.match(secret, /^ddr_\S{16,}$/, "a robot secret");
  assert.equal(await form.getByRole("alert").innerText(), "", "no error under the form");
  const row = robotRow(page, username);
  assert.equal(await row.count(), 1, "the new robot is listed");
  assert.match(await row.innerText(), /team-a\/\*: pull, push/);
  assert.match(await row.innerText(), /\bactive\b/);

  // The list the page reads never carries it, and a reload does not show it.
  const listed = await pageFetch(page, "/api/v1/robots");
  assert.equal(listed.status, 200);
  assert.ok(!JSON.stringify(listed.body).includes(secret), "the list has no secret");
  await page.reload();
  await page.getByRole("heading", { name: "Robot accounts" }).waitFor();
  await robotRow(page, username).waitFor();
  assert.ok(!(await page.content()).includes(secret), "the secret is gone after a reload");
  assert.equal(await page.getByRole("status").filter({ hasText: username }).count(), 0);

  // Revoke (the confirmation is accepted): the row says so, and has no revoke button.
  await robotRow(page, username).getByRole("button", { name: "Revoke" }).click();
  await robotRow(page, username).getByRole("cell", { name: "revoked", exact: true }).waitFor();
  assert.equal(await robotRow(page, username).getByRole("button", { name: "Revoke" }).count(), 0);

  // The audit log lists the creation and the revocation, by the administrator.
  await open(page, "Audit log", "Audit log");
  const entry = action =>
    page.locator("#view table tr")
      .filter({ has: page.getByRole("cell", { name: action, exact: true }) })
      .filter({ has: page.getByRole("cell", { name, exact: true }) });
  await entry("robot.add").first().waitFor();
  assert.match(await entry("robot.add").first().innerText(), new RegExp(`\\b${ADMIN.name}\\b`));
  assert.match(await entry("robot.add").first().innerText(), /\bok\b/);
  assert.equal(await entry("robot.revoke").count(), 1);
  assert.ok(!(await page.content()).includes(secret), "the audit log does not show the secret");

  // Filtering by action narrows the list to that action.
  await page.getByLabel("Action").fill("robot.add");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/#\/audit\?action=robot\.add/);
  await entry("robot.add").first().waitFor();
  assert.equal(await entry("robot.revoke").count(), 0);
  assert.deepEqual(errors, []);
});

test("a write without the CSRF header is refused, with it it goes through", async t => {
  const { page, errors } = await openBrowser(t);
  await visit(page, "/ui/");
  await signIn(page, ADMIN);
  const name = unique("csrf");
  const body = JSON.stringify({ name, permissions: [{ pattern: "team-a/*", actions: ["pull"] }] });
  const headers = { "Content-Type": "application/json", Accept: "application/json" };

  const without = await pageFetch(page, "/api/v1/robots", { method: "POST", headers, body });
  assert.equal(without.status, 403, "no X-CSRF-Token");
  const wrong = await pageFetch(page, "/api/v1/robots", {
    method: "POST", headers: { ...headers, "X-CSRF-Token": "not-the-token" }, body,
  });
  assert.equal(wrong.status, 403, "a wrong X-CSRF-Token");
  let list = await pageFetch(page, "/api/v1/robots");
  assert.ok(!list.body.some(r => r.name === name), "nothing was created");

  // The same request with the session's token is accepted: the refusals
  // above were about the token, not the request.
  const token = await csrfToken(page);
  const ok = await pageFetch(page, "/api/v1/robots", {
    method: "POST", headers: { ...headers, "X-CSRF-Token": token }, body,
  });
  assert.equal(ok.status, 201);
  list = await pageFetch(page, "/api/v1/robots");
  assert.ok(list.body.some(r => r.name === name));
  // Deleting without the token is refused too.
  const del = await pageFetch(page, `/api/v1/robots/${name}`, { method: "DELETE" });
  assert.equal(del.status, 403);
  const delOk = await pageFetch(page, `/api/v1/robots/${name}`, { method: "DELETE", headers: { "X-CSRF-Token": token } });
  assert.equal(delOk.status, 204);
  assert.deepEqual(errors, []);
});

test("the admin pages have no serious accessibility violation", async t => {
  const { page, errors } = await openBrowser(t);
  await visit(page, "/ui/");
  await signIn(page, ADMIN);
  await page.getByRole("heading", { name: "Vulnerability database" }).waitFor();
  await assertAccessible(page, "the overview");
  for (const [link, , heading] of ADMIN_PAGES) {
    await open(page, link, heading);
    await assertAccessible(page, `the ${link} page`);
  }
  // The robots page with a secret on show.
  await open(page, "Robots", "Robot accounts");
  const form = page.locator("#add-robot");
  await form.getByLabel("Name").fill(unique("axe"));
  await form.getByLabel("Repository pattern").fill("team-a/*");
  await form.getByRole("button", { name: "Create robot" }).click();
  await page.getByRole("status").waitFor();
  await assertAccessible(page, "the robots page showing a secret");
  for (const [link, heading] of [["Images", "Images"], ["Vulnerabilities", "Vulnerabilities"], ["Scan queue", "Scan queue"]]) {
    await open(page, link, heading);
    await assertAccessible(page, `the ${link} page`);
  }
  assert.deepEqual(errors, []);
});

test("an administrator made in the dashboard sets their own password and can still make changes", async t => {
  const admin = await openBrowser(t);
  let page = admin.page;
  await visit(page, "/ui/#/users");
  await signIn(page, ADMIN);
  await page.getByRole("heading", { name: "Add a user" }).waitFor();

  // A user, and a binding that makes them an administrator.
  const name = unique("ops");
  const first = unique("first-pw");
  const second = unique("second-pw");
  const add = page.locator("#add-user");
  await add.getByLabel("Name").fill(name);
  await add.getByLabel("Password").fill(first);
  await add.getByLabel("Groups").fill("ops");
  await add.getByRole("button", { name: "Add user" }).click();
  const row = page.locator("#view table tr").filter({ has: page.getByRole("cell", { name, exact: true }) });
  await row.waitFor();
  assert.match(await row.innerText(), /\bops\b/);

  await open(page, "Access", "Bindings");
  const bind = page.locator("#add-binding");
  await bind.getByLabel("Subject kind").selectOption("user");
  await bind.getByLabel("Subject name").fill(name);
  await bind.getByLabel("Repository pattern").fill("**");
  await bind.getByLabel("admin").check();
  await bind.getByRole("button", { name: "Add binding" }).click();
  await page.locator("#view table tr").filter({ hasText: `user ${name}` }).waitFor();

  // They sign in in their own browser and set their own password in a
  // masked field (no prompt() showing it in clear).
  const ops = await openBrowser(t);
  page = ops.page;
  await visit(page, "/ui/#/users");
  await signIn(page, { name, password: first });
  const set = page.locator("#set-password");
  await set.waitFor();
  assert.equal(await set.getByLabel("User").inputValue(), name, "their own name is chosen");
  assert.equal(await set.getByLabel("New password").getAttribute("type"), "password");
  await set.getByLabel("New password").fill(second);
  await set.getByRole("button", { name: "Set password" }).click();
  await page.getByRole("status").filter({ hasText: `The password of ${name} was changed.` }).waitFor();
  assert.equal(await set.getByRole("alert").innerText(), "");
  assert.ok(!(await page.content()).includes(second), "the new password is not in the page");

  // The session was renewed with a new CSRF token: writes still work.
  await open(page, "Robots", "Robot accounts");
  const robot = unique("after-pw");
  const form = page.locator("#add-robot");
  await form.getByLabel("Name").fill(robot);
  await form.getByLabel("Repository pattern").fill("team-a/*");
  await form.getByRole("button", { name: "Create robot" }).click();
  await page.getByRole("status").filter({ hasText: `robot$${robot}` }).waitFor();
  assert.equal(await form.getByRole("alert").innerText(), "", "no CSRF refusal");
  await robotRow(page, `robot$${robot}`).getByRole("button", { name: "Delete" }).click();
  await eventually(async () => (await robotRow(page, `robot$${robot}`).count()) === 0, "the robot to go");

  // Signing out works, the old password no longer does, the new one does.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("alert").filter({ hasText: "Signed out." }).waitFor();
  await page.getByLabel("User name").fill(name);
  await page.getByLabel("Password").fill(first);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").filter({ hasText: /\S/ }).filter({ hasNotText: "Signed out." }).waitFor();
  await signIn(page, { name, password: second });
  assert.deepEqual(ops.errors, []);
  assert.deepEqual(ops.dialogs.filter(d => d.startsWith("alert")), [], "no error popped up");

  // The first administrator removes them again.
  page = admin.page;
  await open(page, "Users", "Users");
  await row.getByRole("button", { name: "Remove" }).click();
  await eventually(async () => (await row.count()) === 0, "the user to go");
  assert.deepEqual(admin.errors, []);
});

test("an image page with findings of every severity has no serious accessibility violation", async t => {
  const { page, errors } = await openBrowser(t);
  await visit(page, "/ui/");
  await signIn(page, ADMIN);
  // The page's rendering of findings, whatever this server has assessed:
  // the image's answer is given here, in the API's shape.
  const digest = `sha256:${"ab".repeat(32)}`;
  const severities = ["critical", "high", "medium", "low", "unknown"];
  const findings = severities.map((severity, i) => ({
    id: `CVE-2024-000${i}`, aliases: [`DSA-${i}`], severity, cvss: { score: 9 - i },
    package: `pkg${i}`, ecosystem: "Debian", installed_version: "1.0", fixed_version: i % 2 ? null : "1.1",
    status: i % 2 ? "unfixed" : "fixed", summary: `a ${severity} problem`, fixable: i % 2 === 0,
    exempt: i === 3, exempted_by: i === 3 ? "ex1" : null,
  }));
  const image = {
    digest, tags: ["team-a/app:v1"], kind: "manifest", platform: "linux/amd64", status: "assessed",
    health: { healthy: false, reason: "1 critical finding" }, stale: false, assessed_at: "2026-01-01T00:00:00Z",
    db_version: "test", summary: { critical: 1, high: 1, medium: 1, low: 1, unknown: 1, fixable: 3, exempt: 1 },
    findings, children: [], diffs: null,
    exemptions: [{ id: "ex1", author: ADMIN.name, reason: "not reachable", expires_at: null }],
    remediation: {
      base_image: { advice: "Rebuild on a newer base image." }, better_alternative: null,
      upgrade_plan: [{ package: "pkg0", ecosystem: "Debian", installed_version: "1.0", upgrade_to: "1.1", highest_severity: "critical", clears: ["CVE-2024-0000"] }],
      findings_cleared: 1, findings_without_fix: 2,
    },
  };
  await page.route(/\/api\/v1\/images\/sha256/, r =>
    r.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify(image) }));
  await page.goto(page.url().replace(/#.*$/, "") + `#/image/${encodeURIComponent(digest)}`);
  await page.getByRole("heading", { name: "Vulnerabilities", exact: true }).waitFor();
  for (const s of severities) await page.locator(`#view table .sev.${s}`).first().waitFor();
  assert.match(await page.title(), /image/i);
  await assertAccessible(page, "an image page with findings");
  assert.deepEqual(errors, []);
});

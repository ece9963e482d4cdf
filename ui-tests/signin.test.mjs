// Signing in and out: what an anonymous visitor sees, a wrong password,
// the session cookie's flags, and what signing out leaves behind.

import assert from "node:assert/strict";
import { test } from "node:test";
import { ADMIN, BASE, assertAccessible, eventually, openBrowser, pageFetch, signIn, unique, visit } from "./lib.mjs";

async function expectSignInForm(page) {
  await page.getByRole("heading", { name: "Sign in to drydock" }).waitFor();
  assert.ok(await page.getByLabel("User name").isVisible(), "a labelled user name field");
  assert.ok(await page.getByLabel("Password").isVisible(), "a labelled password field");
  assert.ok(await page.getByRole("button", { name: "Sign in" }).isVisible(), "a sign-in button");
}

test("an anonymous visitor gets the sign-in form and no data", async t => {
  const { page, errors } = await openBrowser(t);
  const api = [];
  page.on("request", r => {
    const u = new URL(r.url());
    if (u.pathname.startsWith("/api/")) api.push(u.pathname);
  });
  await visit(page, "/ui/");
  await expectSignInForm(page);
  assert.match(await page.title(), /sign in/i, "the title says what the page is");
  // Asking who we are is the only API call: nothing else is read.
  assert.deepEqual(api, ["/api/v1/auth/session"]);
  assert.equal(await page.locator("#view table").count(), 0, "no table of data");
  assert.ok(await page.locator("nav").isHidden(), "no navigation before signing in");
  assert.equal(await page.locator("#user").innerText(), "", "nobody in the header");

  // A deep link to an admin page shows the same form, and reads nothing.
  await page.goto("about:blank");
  api.length = 0;
  await visit(page, "/ui/#/robots");
  await expectSignInForm(page);
  assert.deepEqual(api, ["/api/v1/auth/session"]);
  // So does /ui/login.
  await page.goto("about:blank");
  api.length = 0;
  await visit(page, "/ui/login");
  await expectSignInForm(page);
  assert.deepEqual(api, ["/api/v1/auth/session"]);
  assert.deepEqual(errors, [], "no script error");
});

test("the sign-in page has no serious accessibility violation", async t => {
  const { page } = await openBrowser(t);
  await visit(page, "/ui/");
  await expectSignInForm(page);
  await assertAccessible(page, "the sign-in form");
  // Also with an error message on it.
  await page.getByLabel("User name").fill(ADMIN.name);
  await page.getByLabel("Password").fill(unique("wrong"));
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").filter({ hasText: /\S/ }).waitFor();
  await assertAccessible(page, "the sign-in form with an error");
});

test("a wrong password shows an error in the page and starts no session", async t => {
  const { context, page, errors } = await openBrowser(t);
  await visit(page, "/ui/");
  const wrong = unique("not-the-password");
  await page.getByLabel("User name").fill(ADMIN.name);
  await page.getByLabel("Password").fill(wrong);
  await page.getByRole("button", { name: "Sign in" }).click();
  const alert = page.getByRole("alert").filter({ hasText: /\S/ });
  await alert.waitFor();
  assert.match(await alert.innerText(), /password|credentials|sign/i);
  // Still the form, nobody signed in, no cookie, and the session says 401.
  await expectSignInForm(page);
  assert.equal(await page.locator("#user").innerText(), "");
  assert.deepEqual((await context.cookies(BASE)).map(c => c.name), []);
  assert.equal((await pageFetch(page, "/api/v1/auth/session")).status, 401);
  // The password typed is not echoed anywhere on the page.
  assert.ok(!(await page.content()).includes(wrong), "the wrong password is not in the page");
  assert.deepEqual(errors, []);
});

test("the session cookie is HttpOnly and SameSite=Strict, and signing out clears it", async t => {
  const { context, page, errors } = await openBrowser(t);
  await visit(page, "/ui/");
  await signIn(page, ADMIN);

  const cookies = await context.cookies(BASE);
  const session = cookies.find(c => c.name === "drydock_session");
  assert.ok(session, "a session cookie is set");
  assert.equal(session.httpOnly, true, "HttpOnly");
  assert.equal(session.sameSite, "Strict", "SameSite=Strict");
  assert.equal(session.path, "/");
  // The page's script cannot read it.
  const visible = await page.evaluate(() => document.cookie);
  assert.ok(!visible.includes("drydock_session"), "document.cookie does not show the session");
  assert.ok(!visible.includes(session.value), "nor its value");

  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("alert").filter({ hasText: "Signed out." }).waitFor();
  await page.getByRole("heading", { name: "Sign in to drydock" }).waitFor();
  assert.equal(await page.locator("#user").innerText(), "");
  assert.deepEqual((await context.cookies(BASE)).filter(c => c.name === "drydock_session"), [], "cookie gone");

  // After a reload the form is still there, and the API says nobody.
  await page.reload();
  await visit(page, "/ui/");
  await expectSignInForm(page);
  assert.ok(await page.locator("nav").isHidden());
  assert.equal((await pageFetch(page, "/api/v1/auth/session")).status, 401);
  assert.deepEqual(errors, []);
});

test("a sign-out the server refused does not claim to have signed out", async t => {
  const { context, page, errors, dialogs } = await openBrowser(t);
  await visit(page, "/ui/");
  await signIn(page, ADMIN);
  await page.route("**/api/v1/auth/logout", r =>
    r.fulfill({ status: 500, contentType: "application/json", body: '{"error":{"code":"INTERNAL","message":"internal error"}}' }));
  await page.getByRole("button", { name: "Sign out" }).click();
  await eventually(() => dialogs.length > 0, "a message");
  assert.ok(dialogs.some(d => /could not sign out/i.test(d)), `told that signing out failed (${dialogs})`);
  assert.equal(await page.getByText("Signed out.").count(), 0, "no claim of success");
  assert.ok(await page.getByRole("button", { name: "Sign out" }).isVisible(), "still signed in");
  assert.ok((await context.cookies(BASE)).some(c => c.name === "drydock_session"));

  // Once the server answers, signing out works.
  await page.unroute("**/api/v1/auth/logout");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("alert").filter({ hasText: "Signed out." }).waitFor();
  assert.equal((await pageFetch(page, "/api/v1/auth/session")).status, 401);
  assert.deepEqual(errors, []);
});

// A user who may only pull team-a/*: no admin pages, and the admin API
// refuses them even when the page asks directly.

import assert from "node:assert/strict";
import { test } from "node:test";
import { IMAGE_REPO, READER, assertAccessible, csrfToken, openBrowser, pageFetch, signIn, unique, visit } from "./lib.mjs";

test("a reader sees no admin pages, and the admin API answers 403", async t => {
  const { page, errors } = await openBrowser(t);
  await visit(page, "/ui/");
  await signIn(page, READER);

  const user = page.locator("#user");
  assert.match(await user.innerText(), new RegExp(`\\b${READER.name}\\b`));
  assert.equal(await user.getByText("admin", { exact: true }).count(), 0, "no admin badge");
  const nav = page.getByRole("navigation");
  await nav.getByRole("link", { name: "Images", exact: true }).waitFor();
  for (const link of ["Users", "Robots", "Access", "Audit log"]) {
    assert.equal(await nav.getByRole("link", { name: link, exact: true }).count(), 0, `no ${link} link`);
  }
  await page.getByRole("heading", { name: "Vulnerability database" }).waitFor();
  await assertAccessible(page, "the reader's overview");

  // Straight to an admin page: an error in the page, no table of users.
  await page.goto(page.url().replace(/#.*$/, "") + "#/users");
  await page.locator("#view .error").filter({ hasText: /\S/ }).waitFor();
  assert.equal(await page.locator("#view table").count(), 0);

  // The page's own fetches to admin endpoints are refused.
  for (const path of ["/api/v1/users", "/api/v1/robots", "/api/v1/bindings", "/api/v1/audit"]) {
    const r = await pageFetch(page, path, { headers: { Accept: "application/json" } });
    assert.equal(r.status, 403, `GET ${path}`);
    assert.equal(r.body.error.code, "FORBIDDEN");
  }
  // A write with a valid CSRF token is still refused: it is not theirs to make.
  const token = await csrfToken(page);
  const name = unique("sneaky");
  const r = await pageFetch(page, "/api/v1/robots", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": token },
    body: JSON.stringify({ name, permissions: [{ pattern: "**", actions: ["push"] }] }),
  });
  assert.equal(r.status, 403);

  // What they may pull shows; when an image was pushed, it is listed.
  await nav.getByRole("link", { name: "Images", exact: true }).click();
  await page.getByRole("heading", { name: "Images", exact: true }).waitFor();
  if (IMAGE_REPO) {
    await page.locator("#view table").getByRole("cell", { name: IMAGE_REPO, exact: true }).first().waitFor();
  }
  await assertAccessible(page, "the reader's images page");
  assert.deepEqual(errors, []);
});

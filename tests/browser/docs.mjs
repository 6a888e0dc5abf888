// The API docs as a person uses them, in Debian's Chromium (playwright-core):
// /docs/ -> the WePeople reference -> Authorize with a wp_live key -> ping: "Try it out",
// "Execute" -> the rendered response. Also the index and an error page through axe-core.
// Prints one JSON report on stdout; tests/browser/test_docs_browser.py checks it.
//
//   node tests/browser/docs.mjs BASE_URL WP_LIVE_KEY
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const [base, key] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const report = { consoleErrors: [], cspViolations: [], requests: [] };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage();
try {
  page.setDefaultTimeout(20000);
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    const text = message.text();
    (text.includes("Content Security Policy") ? report.cspViolations : report.consoleErrors).push(text);
  });
  page.on("request", (request) => {
    report.requests.push({ url: request.url(), authorization: request.headers()["authorization"] || null });
  });

  // The index of both APIs, then a link to the WePeople reference.
  await page.goto(`${base}/docs/`);
  report.indexTitle = await page.title();
  report.indexLinks = await page.$$eval("main a", (links) => links.map((a) => a.getAttribute("href")));
  report.indexAxe = await axe(page);
  await Promise.all([page.waitForURL(`${base}/docs/wepeople/`),
                     page.getByRole("link", { name: "Interactive reference (Swagger UI)" }).first().click()]);

  // Swagger UI rendered the 3.1 contract (its version badge says so) with this server first.
  await page.locator(".swagger-ui .info .title").waitFor();
  report.specTitle = (await page.locator(".swagger-ui .info .title").innerText()).trim();
  report.versionBadges = await page.locator(".swagger-ui .info .version-stamp, .swagger-ui .info small pre")
    .allInnerTexts();
  report.servers = await page.locator(".servers select option").allInnerTexts();

  // Authorize with the key.
  await page.locator(".auth-wrapper button.authorize").click();
  const dialog = page.locator(".modal-ux");
  await dialog.locator("input[type=text], input[type=password]").first().fill(key);
  await dialog.locator("button.modal-btn.authorize").click();
  report.authorized = await dialog.locator("button.modal-btn").allInnerTexts();
  await dialog.locator("button.btn-done").click();

  // ping: Try it out -> Execute -> the response the page shows.
  const ping = page.locator(".opblock-get").filter({ hasText: "/api/v1/ingest/ping" }).first();
  await ping.locator(".opblock-summary").click();
  await ping.getByRole("button", { name: "Try it out" }).click();
  const answered = page.waitForResponse((r) => r.url().endsWith("/api/v1/ingest/ping"));
  await ping.getByRole("button", { name: "Execute" }).click();
  const response = await answered;
  report.pingUrl = response.url();
  const live = ping.locator(".live-responses-table .response .response-col_status").first();
  await live.waitFor();
  report.renderedStatus = (await live.innerText()).trim();
  report.renderedBody = (await ping.locator(".live-responses-table .response-col_description pre").first()
    .innerText()).trim();

  // An error page: what a failing client's docsUrl opens.
  await page.goto(`${base}/docs/wepeople/errors/invalid_key`);
  report.errorPageText = await page.locator("main").innerText();
  report.errorPageAxe = await axe(page);
} catch (error) {
  // Reported, not thrown: the test shows how far the walk got and what the page said.
  report.error = String(error).slice(0, 2000);
  report.failedAt = page.url();
  if (process.env.DOCS_SCREENSHOT) await page.screenshot({ path: process.env.DOCS_SCREENSHOT, fullPage: true });
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report));

async function axe(page) {
  // Injected through the DevTools protocol, so the pages' Content-Security-Policy does not apply to it.
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  return result.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length }));
}

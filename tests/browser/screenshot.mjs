// Opens a local HTML page (a `ferc compare` / `ferc study` report) in Debian's headless
// Chromium and saves a full-page screenshot. The page may load only its own folder's files:
// any request to the network fails the run, as does a JavaScript error or a broken image.
// Usage: node tests/browser/screenshot.mjs PAGE.html OUT.png [WIDTH]
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { chromium } from "playwright-core";

const [page_path, out, width = "1280"] = process.argv.slice(2);
if (!page_path || !out) {
  console.error("usage: node tests/browser/screenshot.mjs PAGE.html OUT.png [WIDTH]");
  process.exit(2);
}
const url = pathToFileURL(resolve(page_path)).href;
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: ["--no-sandbox"] });
const problems = [];
try {
  const page = await browser.newPage({ viewport: { width: Number(width), height: 900 } });
  page.on("pageerror", (e) => problems.push(`script error: ${e.message}`));
  page.on("request", (r) => {
    if (!r.url().startsWith("file:") && !r.url().startsWith("data:")) problems.push(`network request: ${r.url()}`);
  });
  page.on("requestfailed", (r) => problems.push(`failed to load: ${r.url()}`));
  await page.goto(url, { waitUntil: "load" });
  const broken = await page.$$eval("img", (imgs) => imgs.filter((i) => !i.complete || i.naturalWidth === 0).map((i) => i.src));
  for (const b of broken) problems.push(`broken image: ${b}`);
  await page.screenshot({ path: out, fullPage: true });
  const h = await page.evaluate(() => document.documentElement.scrollHeight);
  console.log(`${out}: ${width} x ${h} px of ${page_path}`);
} finally {
  await browser.close();
}
for (const p of problems) console.error(p);
process.exit(problems.length ? 1 : 0);

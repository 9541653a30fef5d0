// ferc serve's page in a real browser: Debian's chromium, headless, driven by playwright-core,
// with a fake camera that plays a .y4m file. Checks that boxes with expression labels appear
// within a few seconds, that tracked ids stay the same over consecutive frames, that the
// photo upload path gives the API's answer, that the page asks nothing from the network, and
// that the server exits 0 on SIGINT. Saves a screenshot.
//
// Environment: FERC_BIN (the ferc binary), FERC_Y4M (the fake camera's video), FERC_PHOTO (a
// photo with one face), FERC_OUT (folder for serve-page.png); FERC_MODEL optional.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const env = (k) => {
  if (!process.env[k]) throw new Error(`${k} is not set`);
  return process.env[k];
};
const bin = env("FERC_BIN"), y4m = env("FERC_Y4M"), photo = env("FERC_PHOTO"), out = env("FERC_OUT");
let failures = 0;
const check = (ok, what) => {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures++;
};

// the server, on a free port; it prints its URL first
const server = spawn(bin, ["serve", "--port", "0", "--quiet"], { stdio: ["ignore", "pipe", "inherit"] });
const url = await new Promise((resolve, reject) => {
  let text = "";
  server.stdout.on("data", (d) => {
    text += d;
    const m = text.match(/listening on (http:\/\/\S+\/)/);
    if (m) resolve(m[1]);
  });
  server.on("exit", (code) => reject(new Error(`ferc serve exited with ${code} before listening`)));
  setTimeout(() => reject(new Error("ferc serve did not start in 60 s")), 60000);
});
console.log(`server at ${url}`);

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", // CI runs as root
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    `--use-file-for-fake-video-capture=${y4m}`,
    // off the network: nothing but the loopback server resolves, no background traffic
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--no-proxy-server",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--no-first-run",
    "--metrics-recording-only",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  const foreign = [];
  page.on("request", (r) => {
    const u = r.url();
    if (!u.startsWith(url) && !u.startsWith("blob:") && !u.startsWith("data:")) foreign.push(u);
  });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  await page.waitForFunction(() => !document.getElementById("model").textContent.startsWith("loading"));
  check((await page.textContent("#model")).includes("resnet"), "the page shows the model");

  // the camera: labelled boxes within a few seconds
  const t0 = Date.now();
  await page.click("#start");
  await page.waitForSelector("#liveFaces li[data-label]", { timeout: 20000 });
  const firstMs = Date.now() - t0;
  check(firstMs < 15000, `a labelled face appears ${firstMs} ms after Start`);
  const labels = await page.$$eval("#liveFaces li", (lis) => lis.map((li) => li.dataset.label));
  const classes = ["Angry", "Fear", "Happy", "Neutral", "Sad", "Surprise"];
  check(labels.length > 0 && labels.every((l) => classes.includes(l)), `labels are expressions: ${labels}`);
  // let 20 more frames come back, then look at the tracked ids frame to frame
  const start = await page.evaluate(() => window.fercState.frames);
  await page.waitForFunction((n) => window.fercState.frames >= n, start + 20, { timeout: 60000 });
  const hist = await page.evaluate(() => window.fercState.history);
  const iou = (a, b) => {
    const x0 = Math.max(a[0], b[0]), y0 = Math.max(a[1], b[1]);
    const x1 = Math.min(a[0] + a[2], b[0] + b[2]), y1 = Math.min(a[1] + a[3], b[1] + b[3]);
    const i = Math.max(0, x1 - x0) * Math.max(0, y1 - y0);
    return i / (a[2] * a[3] + b[2] * b[3] - i);
  };
  let pairs = 0, same = 0;
  for (let t = 1; t < hist.length; t++)
    for (const f of hist[t])
      for (const g of hist[t - 1])
        if (iou(f.box, g.box) > 0.5) {
          pairs++;
          if (f.id === g.id) same++;
        }
  check(pairs >= 10 && same === pairs, `tracked ids stable: ${same} of ${pairs} overlapping face pairs keep their id`);
  const fps = await page.textContent("#fps"), ms = await page.textContent("#server");
  check(Number(fps) > 0 && Number(ms) > 0, `frames/s ${fps}, server ${ms} ms/frame shown`);
  await page.screenshot({ path: `${out}/serve-page.png` });

  // the photo path: the page shows the API's answer
  await page.click("#stop");
  await page.setInputFiles("#file", photo);
  await page.waitForSelector("#photoFaces li[data-label]", { timeout: 20000 });
  const shown = await page.$$eval("#photoFaces li", (lis) => lis.map((li) => li.dataset.label));
  const api = await (await fetch(url + "api/v1/recognize", {
    method: "POST", body: readFileSync(photo), headers: { "Content-Type": "image/jpeg" },
  })).json();
  const want = api.faces.map((f) => f.label);
  check(JSON.stringify(shown) === JSON.stringify(want), `photo: the page shows ${shown}, the API says ${want}`);
  check(await page.isVisible("#photoCanvas"), "the annotated photo is drawn");
  await page.screenshot({ path: `${out}/serve-page-photo.png` });
  check(foreign.length === 0, `no request leaves the server: ${foreign.join(" ") || "none"}`);
  check(errors.length === 0, `no script errors: ${errors.join("; ") || "none"}`);
} finally {
  await browser.close();
  const code = await new Promise((resolve) => {
    server.on("exit", (c) => resolve(c));
    server.kill("SIGINT");
  });
  check(code === 0, `ferc serve exits ${code} on SIGINT`);
}
console.log(failures ? `${failures} check(s) failed` : "all browser checks passed");
process.exit(failures ? 1 : 0);

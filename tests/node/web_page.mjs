// The embedded web chat page in headless Chromium: type a message, send it,
// and see the reply arrive streamed (the reply element is updated several
// times before the page marks it done).
//   node web_page.mjs URL   (playwright-core installed beside this file)
import { chromium } from "playwright-core";

const url = process.argv[2];
let passed = 0, failed = 0;
function check(name, ok, detail) {
  console.log(`${ok ? "PASS" : "FAIL"} page: ${name}${ok ? "" : " " + JSON.stringify(detail)}`);
  ok ? passed++ : failed++;
}

const browser = await chromium.launch({
  executablePath: process.env.BC_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const external = [];
  page.on("request", (r) => { if (!r.url().startsWith(url)) external.push(r.url()); });
  await page.goto(url);
  check("title", (await page.title()).includes("baichuan"), await page.title());
  // Count the updates of the reply's text before it is done.
  await page.evaluate(() => {
    window.__updates = 0;
    new MutationObserver(() => {
      const a = document.querySelector(".msg.assistant");
      if (a && a.textContent && !a.dataset.done) window.__updates++;
    }).observe(document.getElementById("log"), { subtree: true, childList: true, characterData: true });
  });
  await page.fill("#max", "24");
  await page.fill("#input", "你好");
  await page.click("#send");
  await page.waitForSelector(".msg.user", { timeout: 30000 });
  check("the message is shown", (await page.textContent(".msg.user")) === "你好", await page.textContent(".msg.user"));
  await page.waitForSelector('.msg.assistant[data-done="1"]', { timeout: 120000 });
  const reply = await page.textContent(".msg.assistant");
  const updates = await page.evaluate(() => window.__updates);
  check("a reply is shown", reply.length > 0, reply);
  check("the reply arrived streamed (several updates)", updates >= 3, updates);
  check("no page errors", errors.length === 0, errors);
  check("no requests outside the server (no CDN)", external.length === 0, external);
} finally {
  await browser.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);

// The embedded web chat page in headless Chromium: type a message, send it,
// and see the streamed reply shown. The page's request is checked to ask for
// a stream and get text/event-stream back; a seed is added to it on the way
// (page.route) so that the text shown can be compared with the same request
// made non-streamed. Then the JSON toggle: the request carries
// response_format json_object, and the reply is a JSON object.
//   node web_page.mjs URL   (playwright-core installed beside this file)
import { chromium } from "playwright-core";

const url = process.argv[2];
let passed = 0, failed = 0;
function check(name, ok, detail) {
  console.log(`${ok ? "PASS" : "FAIL"} page: ${name}${ok ? "" : " " + JSON.stringify(detail)}`);
  ok ? passed++ : failed++;
}

// The seed added to the page's requests: 6 for the JSON one (with the
// default model its reply ends by EOS, so the parse check has a reply to parse).
const seedOf = (body) => (body.response_format ? 6 : 1);

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
  const sent = [];
  const types = [];
  await page.route("**/v1/chat/completions", async (route) => {
    const body = JSON.parse(route.request().postData());
    sent.push(body);
    await route.continue({ postData: JSON.stringify({ ...body, seed: seedOf(body) }) });
  });
  page.on("response", (r) => { if (r.url().endsWith("/v1/chat/completions")) types.push(r.headers()["content-type"]); });
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
  const want = await (await fetch(new URL("/v1/chat/completions", url), {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ ...sent[0], stream: false, seed: 1 }),
  })).json();
  console.log(`reply shown in ${updates} update(s): ${JSON.stringify(reply)}`);
  check("the page asked for a stream", sent.length === 1 && sent[0].stream === true &&
        sent[0].messages.length === 1 && sent[0].messages[0].content === "你好", sent);
  check("the reply came as text/event-stream", types.length === 1 && types[0].startsWith("text/event-stream"), types);
  check("the reply shown == the same request non-streamed", reply.length > 0 &&
        reply === want.choices[0].message.content, [reply, want]);
  check("the reply element was updated as it streamed", updates >= 1, updates);

  // The JSON toggle: a new chat with it on asks for response_format
  // json_object. The reply shown is the same request's non-streamed reply,
  // and it ended by EOS (seed 6) and parses as a JSON object. A refusal
  // (the page's .msg.error) fails.
  await page.click("#clear");
  await page.check("#json");
  await page.fill("#max", "200");
  await page.fill("#input", "JSON");
  await page.click("#send");
  await page.waitForSelector('.msg.assistant[data-done="1"], .msg.error', { timeout: 120000 });
  const jsonSent = sent[1] || {};
  check("JSON on: the request carries response_format json_object", sent.length === 2 &&
        JSON.stringify(jsonSent.response_format) === JSON.stringify({ type: "json_object" }), sent[1]);
  const resp = await fetch(new URL("/v1/chat/completions", url), {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ ...jsonSent, stream: false, seed: seedOf(jsonSent) }),
  });
  const jsonWant = await resp.json();
  const shown = await page.textContent("#log .msg:last-child");
  const choice = resp.status === 200 ? jsonWant.choices[0] : null;
  check("JSON on: the server answers 200 and the page shows no error",
        choice !== null && (await page.$(".msg.error")) === null, [resp.status, shown, jsonWant]);
  if (choice !== null) {
    check("JSON on: the reply shown == the same request non-streamed", shown === choice.message.content,
          [shown, jsonWant]);
    let parsed = null;
    try { parsed = JSON.parse(shown); } catch (e) { parsed = e; }
    check("JSON on: the reply ended by EOS and is a JSON object", choice.finish_reason === "stop" &&
          parsed !== null && typeof parsed === "object" && !Array.isArray(parsed) && !(parsed instanceof Error),
          [shown, choice.finish_reason]);
    console.log(`JSON reply (${choice.finish_reason}): ${JSON.stringify(shown)}`);
  }
  await page.uncheck("#json");
  check("no page errors", errors.length === 0, errors);
  check("no requests outside the server (no CDN)", external.length === 0, external);
} finally {
  await browser.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);

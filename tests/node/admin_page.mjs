// The operator's usage page (/admin) in headless Chromium: enter the admin
// key, show a range, and read back what the page drew. Every bar of both
// charts (its data-value) and every table row must equal /admin/usage's
// JSON, fetched here with the same key, and the table's per-tenant totals
// and the bars' sums must equal LEDGER, the ledger's rows counted by the
// caller ({tenant: [requests, prompt_tokens, completion_tokens]}); a
// non-admin key shows the 403.
//   node admin_page.mjs URL ADMIN_KEY OTHER_KEY FROM TO LEDGER_JSON
//   (playwright-core installed beside this file)
import { chromium } from "playwright-core";

const [url, adminKey, otherKey, from, to, ledgerJson] = process.argv.slice(2);
const ledger = JSON.parse(ledgerJson);
let passed = 0, failed = 0;
function check(name, ok, detail) {
  console.log(`${ok ? "PASS" : "FAIL"} admin page: ${name}${ok ? "" : " " + JSON.stringify(detail)}`);
  ok ? passed++ : failed++;
}

async function usage(bucket, adapter) {
  const q = new URLSearchParams({ from, to, bucket });
  if (adapter !== undefined) q.set("adapter", adapter);
  const r = await fetch(new URL("/admin/usage?" + q, url), { headers: { Authorization: "Bearer " + adminKey } });
  return r.json();
}

// What the page drew: {chart: {tenant: {bucket: value}}}, and the table rows.
async function drawn(page) {
  return page.evaluate(() => {
    const bars = {};
    for (const r of document.querySelectorAll("svg rect.bar")) {
      const c = (bars[r.dataset.chart] ||= {});
      const t = (c[r.dataset.tenant] ||= {});
      t[r.dataset.bucket] = Number(r.dataset.value);
    }
    const rows = [...document.querySelectorAll("#table tbody tr")].map((tr) => {
      const o = { tenant: tr.dataset.tenant, bucket: tr.dataset.bucket };
      for (const td of tr.querySelectorAll("td[data-field]")) o[td.dataset.field] = Number(td.textContent);
      return o;
    });
    const adapters = [...document.querySelectorAll("#adapters tbody tr")].map((tr) => {
      const o = { tenant: tr.dataset.tenant, adapter: tr.dataset.adapter };
      for (const td of tr.querySelectorAll("td[data-field]")) o[td.dataset.field] = Number(td.textContent);
      return o;
    });
    const legend = [...document.querySelectorAll("svg#chart-requests g.legend")].map((g) => g.dataset.tenant);
    const axes = document.querySelectorAll("svg#chart-requests line").length;
    return { bars, rows, adapters, legend, axes };
  });
}

// The page's drawing against the JSON: every bucket of every tenant, zeros included.
function compare(label, want, got) {
  for (const chart of ["requests", "tokens"]) {
    const bad = [];
    let n = 0;
    for (const t of want.tenants) {
      const byBucket = new Map(t.buckets.map((b) => [b.bucket, b]));
      for (const bucket of want.buckets) {
        const b = byBucket.get(bucket);
        const v = !b ? 0 : chart === "requests" ? b.requests : b.prompt_tokens + b.completion_tokens;
        const shown = ((got.bars[chart] || {})[t.tenant] || {})[bucket];
        n++;
        if (shown !== v) bad.push([t.tenant, bucket, v, shown]);
      }
    }
    const nBars = Object.values(got.bars[chart] || {}).reduce((s, t) => s + Object.keys(t).length, 0);
    check(`${label}: ${chart} chart bars (data-value) == /admin/usage (${n} bars)`,
          bad.length === 0 && nBars === n && n === want.tenants.length * want.buckets.length, { bad, nBars, n });
  }
  const wantRows = [];
  const counts = (c) => ({ requests: c.requests, prompt_tokens: c.prompt_tokens,
                           completion_tokens: c.completion_tokens,
                           total_tokens: c.prompt_tokens + c.completion_tokens });
  for (const t of want.tenants) {
    for (const b of t.buckets) wantRows.push({ tenant: t.tenant, bucket: b.bucket, ...counts(b) });
    wantRows.push({ tenant: t.tenant, bucket: "total", ...counts(t.totals) });
  }
  wantRows.push({ tenant: "*", bucket: "total", ...counts(want.totals) });
  check(`${label}: table == /admin/usage (${wantRows.length} rows)`,
        JSON.stringify(got.rows) === JSON.stringify(wantRows), { got: got.rows, want: wantRows });
  const wantAdapters = want.tenants.flatMap((t) => t.adapters.map((a) => ({ tenant: t.tenant, adapter: a.adapter,
                                                                             ...counts(a.totals) })));
  check(`${label}: the adapters table == /admin/usage's per-adapter totals (${wantAdapters.length} rows)`,
        JSON.stringify(got.adapters) === JSON.stringify(wantAdapters), { got: got.adapters, want: wantAdapters });
  // Against the ledger itself: the table's tenant totals and the bars' sums.
  const fromTable = {}, fromBars = {};
  for (const r of got.rows)
    if (r.bucket === "total" && r.tenant !== "*")
      fromTable[r.tenant] = [r.requests, r.prompt_tokens, r.completion_tokens];
  for (const [tenant, byBucket] of Object.entries(got.bars.requests || {}))
    fromBars[tenant] = [Object.values(byBucket).reduce((a, b) => a + b, 0),
                        Object.values(got.bars.tokens[tenant]).reduce((a, b) => a + b, 0)];
  const sorted = (o) => JSON.stringify(Object.keys(o).sort().map((k) => [k, o[k]]));
  const ledgerBars = Object.fromEntries(Object.entries(ledger).map(([k, v]) => [k, [v[0], v[1] + v[2]]]));
  check(`${label}: table totals == the ledger's rows`, sorted(fromTable) === sorted(ledger), [fromTable, ledger]);
  check(`${label}: bars summed per tenant == the ledger's rows`, sorted(fromBars) === sorted(ledgerBars),
        [fromBars, ledgerBars]);
  check(`${label}: a legend entry per tenant, and axes`,
        JSON.stringify(got.legend) === JSON.stringify(want.tenants.map((t) => t.tenant)) && got.axes >= 2, got.legend);
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
  await page.goto(new URL("/admin", url).href);
  check("title", (await page.title()).includes("usage"), await page.title());

  // A non-admin key: the page shows the server's 403.
  await page.fill("#key", otherKey);
  await page.fill("#from", from);
  await page.fill("#to", to);
  await page.click("#load");
  await page.waitForSelector('#status[data-state="error"]', { timeout: 30000 });
  check("a non-admin key shows the 403", (await page.textContent("#status")).startsWith("403"),
        await page.textContent("#status"));

  for (const bucket of ["day", "hour"]) {
    await page.fill("#key", adminKey);
    await page.fill("#from", from);
    await page.fill("#to", to);
    await page.selectOption("#bucket", bucket);
    await page.evaluate(() => { document.getElementById("status").dataset.state = ""; });
    await page.click("#load");
    await page.waitForSelector('#status[data-state="ok"]', { timeout: 30000 });
    compare(`bucket=${bucket}`, await usage(bucket), await drawn(page));
  }
  // The base model only (adapter=): what /admin/usage?adapter= answers.
  await page.selectOption("#adapter", "");
  await page.evaluate(() => { document.getElementById("status").dataset.state = ""; });
  await page.click("#load");
  await page.waitForSelector('#status[data-state="ok"]', { timeout: 30000 });
  const baseOnly = await usage("hour", "");
  const shown = await drawn(page);
  check("adapter 'base model': the table == /admin/usage?adapter=",
        shown.rows.at(-1).requests === baseOnly.totals.requests &&
        shown.adapters.every((r) => r.adapter === ""), [shown.rows.at(-1), baseOnly.totals]);
  check("the key is kept in sessionStorage", (await page.evaluate(() => sessionStorage.getItem("bc_admin_key"))) ===
        adminKey);
  // A reload uses the stored key at once.
  await page.reload();
  await page.waitForSelector('#status[data-state="ok"]', { timeout: 30000 });
  check("after a reload the stored key shows the usage", (await page.inputValue("#key")) === adminKey);
  check("no page errors", errors.length === 0, errors);
  check("no requests outside the server (no CDN)", external.length === 0, external);
} finally {
  await browser.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);

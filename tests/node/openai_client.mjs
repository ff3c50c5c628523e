// The official openai npm client against `baichuan serve`: chat and
// completions, streamed and not; the streamed text must equal the
// non-streamed text for the same seed, and the usage must agree.
//   node openai_client.mjs BASE_URL   (openai installed beside this file)
import OpenAI from "openai";

const baseURL = process.argv[2];
const client = new OpenAI({ baseURL, apiKey: process.env.BC_API_KEY || "unused", maxRetries: 0 });
let passed = 0, failed = 0;
function check(name, ok, detail) {
  console.log(`${ok ? "PASS" : "FAIL"} node: ${name}${ok ? "" : " " + JSON.stringify(detail)}`);
  ok ? passed++ : failed++;
}
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

const models = await client.models.list();
check("models.list", models.data.length === 1 && models.data[0].object === "model", models.data);
const model = models.data[0].id;

// Chat.
const chatReq = { model, messages: [{ role: "system", content: "你是诗人。" }, { role: "user", content: "写一首诗" }],
                  max_tokens: 24, seed: 42, temperature: 0.8 };
const full = await client.chat.completions.create(chatReq);
check("chat non-streamed", full.object === "chat.completion" && full.choices[0].message.role === "assistant" &&
      typeof full.choices[0].message.content === "string" && full.usage.completion_tokens > 0, full);
const stream = await client.chat.completions.create({ ...chatReq, stream: true, stream_options: { include_usage: true } });
let text = "", finish = null, usage = null, chunks = 0;
for await (const chunk of stream) {
  chunks++;
  if (chunk.choices.length) {
    text += chunk.choices[0].delta.content ?? "";
    finish = chunk.choices[0].finish_reason ?? finish;
  }
  if (chunk.usage) usage = chunk.usage;
}
check("chat streamed == non-streamed", text === full.choices[0].message.content, [text, full.choices[0].message.content]);
check("chat streamed finish_reason", finish === full.choices[0].finish_reason, [finish, full.choices[0].finish_reason]);
check("chat streamed usage == non-streamed usage", same(usage, full.usage), [usage, full.usage]);
check("chat streamed in several chunks", chunks > 3, chunks);

// Completions.
const compReq = { model, prompt: "床前明月光，", max_tokens: 20, seed: 9, temperature: 0.9, stop: ["\n\n"] };
const cfull = await client.completions.create(compReq);
check("completions non-streamed", cfull.object === "text_completion" && cfull.choices.length === 1, cfull);
const cstream = await client.completions.create({ ...compReq, stream: true });
let ctext = "", cfinish = null;
for await (const chunk of cstream) {
  ctext += chunk.choices[0]?.text ?? "";
  cfinish = chunk.choices[0]?.finish_reason ?? cfinish;
}
check("completions streamed == non-streamed", ctext === cfull.choices[0].text, [ctext, cfull.choices[0].text]);
check("completions finish_reason", cfinish === cfull.choices[0].finish_reason, [cfinish, cfull.choices[0].finish_reason]);

// n=2: two choices, and the client's stream gives each index its own text.
const nReq = { model, messages: [{ role: "user", content: "写一首诗" }], max_tokens: 10, seed: 9, n: 2 };
const nfull = await client.chat.completions.create(nReq);
check("n=2: two choices, indices 0 and 1", nfull.choices.map((c) => c.index).join() === "0,1", nfull.choices);
const nstream = await client.chat.completions.create({ ...nReq, stream: true });
const ntext = ["", ""];
for await (const chunk of nstream) for (const c of chunk.choices) ntext[c.index] += c.delta?.content ?? "";
check("n=2 streamed == non-streamed, per index", ntext.join("\u0000") ===
      nfull.choices.map((c) => c.message.content).join("\u0000"), [ntext, nfull.choices]);

// Errors come back as the client's APIError with the OpenAI fields.
try {
  await client.chat.completions.create({ model, messages: [{ role: "user", content: "x" }], n: 9 });
  check("n=9 rejected", false, "no error");
} catch (e) {
  check("n=9 rejected as a 400 APIError", e instanceof OpenAI.APIError && e.status === 400 && e.param === "n" &&
        typeof e.message === "string", { status: e.status, param: e.param, message: e.message });
}
try {
  await client.completions.create({ model, prompt: Array.from({ length: 1100 }, (_, i) => 10 + i) });
  check("long prompt rejected", false, "no error");
} catch (e) {
  check("long prompt: 400 context_length_exceeded", e.status === 400 && e.code === "context_length_exceeded",
        { status: e.status, code: e.code });
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);

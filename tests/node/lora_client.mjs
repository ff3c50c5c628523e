// LoRA adapters with the official openai npm client against
// `baichuan serve --lora a=DIR`: models.list() has the base and the adapter
// (its parent the base); a completion and a streamed chat under "a" name it
// and differ from the base's greedy text; an unknown model raises the
// client's NotFoundError with code model_not_found.
//   node lora_client.mjs BASE_URL   (openai installed beside this file)
import OpenAI from "openai";

const baseURL = process.argv[2];
const client = new OpenAI({ baseURL, apiKey: process.env.BC_API_KEY || "unused", maxRetries: 0 });
let passed = 0, failed = 0;
function check(name, ok, detail) {
  console.log(`${ok ? "PASS" : "FAIL"} lora: ${name}${ok ? "" : " " + JSON.stringify(detail)}`);
  ok ? passed++ : failed++;
}

const models = await client.models.list();
const base = models.data[0]?.id;
check("models.list: the base, then adapter a with the base as parent",
      models.data.length === 2 && models.data[1].id === "a" && models.data[1].parent === base, models.data);

const prompt = "Once upon a time there was a little girl who lived in a village near the forest.";
const greedy = { prompt, max_tokens: 16, temperature: 0, repetition_penalty: 1.0 };
const onA = await client.completions.create({ ...greedy, model: "a" });
const onBase = await client.completions.create({ ...greedy, model: base });
check("completion under a names a and differs from the base's",
      onA.model === "a" && onBase.model === base && onA.choices[0].text !== onBase.choices[0].text, [onA, onBase]);

const stream = await client.chat.completions.create({
  model: "a", messages: [{ role: "user", content: "Tell me a story." }], max_tokens: 12, temperature: 0, stream: true,
});
let models_seen = new Set(), text = "";
for await (const chunk of stream) {
  models_seen.add(chunk.model);
  if (chunk.choices.length) text += chunk.choices[0].delta.content ?? "";
}
check("chat stream under a: every chunk names a", models_seen.size === 1 && models_seen.has("a") && text.length > 0,
      [...models_seen]);

try {
  await client.completions.create({ ...greedy, model: "no-such-adapter" });
  check("unknown model raises NotFoundError", false, "no error");
} catch (e) {
  check("unknown model raises NotFoundError (404, model_not_found)",
        e instanceof OpenAI.NotFoundError && e.status === 404 && e.code === "model_not_found", [e.status, e.code]);
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);

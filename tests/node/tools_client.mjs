// Tool calling with the official openai npm client against `baichuan serve`:
// every call parses, names a given tool, and its arguments validate against
// the tool's parameters with Ajv (not our validator); tool_choice of each
// kind, n > 1, streamed (the client's ChatCompletionStream reassembling the
// calls) and not, a two-turn conversation with a tool message, and the 400s.
//   node tools_client.mjs BASE_URL   (openai and ajv installed beside this file)
import OpenAI from "openai";
import Ajv from "ajv";

const baseURL = process.argv[2];
const client = new OpenAI({ baseURL, apiKey: process.env.BC_API_KEY || "unused", maxRetries: 0 });
let passed = 0, failed = 0;
function check(name, ok, detail) {
  console.log(`${ok ? "PASS" : "FAIL"} tools: ${name}${ok ? "" : " " + JSON.stringify(detail)}`);
  ok ? passed++ : failed++;
}

const tools = [
  { type: "function", function: { name: "get_weather", description: "The weather of a city",
    parameters: { type: "object", properties: { city: { type: "string", enum: ["Beijing", "Shanghai", "Chengdu"] },
                                                unit: { enum: ["c", "f"] } },
                  required: ["city", "unit"], additionalProperties: false } } },
  { type: "function", function: { name: "add", description: "Adds two small integers", strict: true,
    parameters: { type: "object", properties: { a: { type: "integer", minimum: 0, maximum: 99 },
                                                b: { type: "integer", minimum: 0, maximum: 99 } },
                  required: ["a", "b"], additionalProperties: false } } },
];
const ajv = new Ajv();
const validators = Object.fromEntries(tools.map((t) => [t.function.name, ajv.compile(t.function.parameters)]));

// Every complete call of a message: a known name, JSON arguments valid against its parameters.
// A reply cut by max_tokens (finish_reason "length") may end inside its last call.
function checkCalls(name, choice, allowed = Object.keys(validators)) {
  const calls = choice.message.tool_calls ?? [];
  const complete = choice.finish_reason === "length" ? calls.slice(0, -1) : calls;
  const problems = [];
  if (choice.finish_reason !== "length" && choice.finish_reason !== "tool_calls") problems.push("finish_reason");
  if (calls.length === 0 && choice.finish_reason === "tool_calls") problems.push("no calls");
  if (choice.message.content !== null) problems.push("content not null");
  for (const call of complete) {
    if (call.type !== "function" || typeof call.id !== "string" || !call.id) problems.push("id/type");
    if (!allowed.includes(call.function.name)) { problems.push(`name ${call.function.name}`); continue; }
    let args;
    try { args = JSON.parse(call.function.arguments); } catch { problems.push(`unparsable ${call.function.arguments}`); continue; }
    if (!validators[call.function.name](args)) problems.push(ajv.errorsText(validators[call.function.name].errors));
  }
  check(name, problems.length === 0 && (choice.finish_reason === "tool_calls" || calls.length > 0),
        { problems, message: choice.message, finish: choice.finish_reason });
}

const model = (await client.models.list()).data[0].id;
const ask = { model, messages: [{ role: "user", content: "北京今天天气怎么样？" }], tools, seed: 7, max_tokens: 200 };

// required, one call per reply, n = 2.
const req = { ...ask, tool_choice: "required", parallel_tool_calls: false, n: 2 };
const full = await client.chat.completions.create(req);
check("required: two choices", full.choices.length === 2, full.choices);
for (const c of full.choices) {
  checkCalls(`required, choice ${c.index}`, c);
  check(`required, choice ${c.index}: one call, finish tool_calls`,
        c.message.tool_calls?.length === 1 && c.finish_reason === "tool_calls", c);
}
check("required: usage counts the calls' tokens", full.usage.completion_tokens > 0 &&
      full.usage.total_tokens === full.usage.prompt_tokens + full.usage.completion_tokens, full.usage);

// The same request streamed: chunks reassembled by hand (per index) and by the client's
// ChatCompletionStream; both equal the non-streamed calls (same seed).
const raw = await client.chat.completions.create({ ...req, stream: true });
const byHand = [[], []], finishes = [];
let firstDeltaOk = true;
for await (const chunk of raw) {
  for (const ch of chunk.choices) {
    for (const tc of ch.delta.tool_calls ?? []) {
      const calls = byHand[ch.index];
      if (!calls[tc.index]) {
        if (!tc.id || tc.type !== "function" || !tc.function?.name) firstDeltaOk = false;
        calls[tc.index] = { id: tc.id, type: tc.type, function: { name: tc.function.name, arguments: "" } };
      } else if (tc.id || tc.function?.name) firstDeltaOk = false;
      calls[tc.index].function.arguments += tc.function?.arguments ?? "";
    }
    if (ch.finish_reason) finishes[ch.index] = ch.finish_reason;
  }
}
check("streamed: a call's first delta has id, type and name; later ones only arguments", firstDeltaOk, byHand);
// The ids differ (they carry the response's id); names and arguments must not.
const fns = (calls) => JSON.stringify((calls ?? []).map((c) => [c.function.name, c.function.arguments]));
for (const c of full.choices)
  check(`streamed == non-streamed, choice ${c.index}`, fns(byHand[c.index]) === fns(c.message.tool_calls) &&
        finishes[c.index] === c.finish_reason,
        [byHand[c.index], c.message.tool_calls, finishes[c.index]]);
const helper = client.beta.chat.completions.stream({ ...req, stream: true });
const final = await helper.finalChatCompletion();
for (const c of final.choices) checkCalls(`ChatCompletionStream.finalChatCompletion, choice ${c.index}`, c);
check("ChatCompletionStream == non-streamed", final.choices.map((c) => fns(c.message.tool_calls)).join() ===
      full.choices.map((c) => fns(c.message.tool_calls)).join(), final.choices);

// A named function: every call is to it.
const named = await client.chat.completions.create({ ...ask, tool_choice: { type: "function", function: { name: "add" } },
                                                     parallel_tool_calls: false });
checkCalls("named function: calls only it", named.choices[0], ["add"]);

// Parallel calls: one or more, each valid (the last may be cut by max_tokens).
const par = await client.chat.completions.create({ ...ask, tool_choice: "required", max_tokens: 400, seed: 3 });
checkCalls("parallel_tool_calls: every complete call valid", par.choices[0]);

// auto: text or calls, as the model starts; each shape is OpenAI's.
for (const seed of [1, 2, 3]) {
  const auto = await client.chat.completions.create({ ...ask, tool_choice: "auto", parallel_tool_calls: false, seed });
  const c = auto.choices[0];
  if (c.message.tool_calls) checkCalls(`auto (seed ${seed}): calls`, c);
  else check(`auto (seed ${seed}): text`, typeof c.message.content === "string" && c.finish_reason !== "tool_calls", c);
}

// auto with "{" made likely (logit_bias): the reply starts a call, and the grammar carries it through.
const brace = await (await fetch(baseURL.replace(/\/v1$/, "") + "/tokenize", { method: "POST",
  body: JSON.stringify({ content: "{" }) })).json();
const autoCall = await client.chat.completions.create({ ...ask, tool_choice: "auto", parallel_tool_calls: false,
  logit_bias: { [brace.tokens.at(-1)]: 100 } });
checkCalls("auto, starting with '{': a whole call", autoCall.choices[0]);
check("auto, starting with '{': finish tool_calls", autoCall.choices[0].finish_reason === "tool_calls", autoCall.choices[0]);

// none: text only.
const none = await client.chat.completions.create({ ...ask, tool_choice: "none", max_tokens: 12 });
check("none: text, no calls", typeof none.choices[0].message.content === "string" &&
      !none.choices[0].message.tool_calls && none.choices[0].finish_reason !== "tool_calls", none.choices[0]);

// Two turns: the call goes back with the tool's result.
const call = full.choices[0].message.tool_calls[0];
const turn2 = await client.chat.completions.create({ ...ask, max_tokens: 16, tool_choice: "auto", messages: [
  ...ask.messages, full.choices[0].message,
  { role: "tool", tool_call_id: call.id, content: JSON.stringify({ temperature: 21, sky: "sunny" }) }] });
check("two turns with a tool message", turn2.choices.length === 1 &&
      turn2.usage.prompt_tokens > full.usage.prompt_tokens, turn2);

// Bad requests: 400s naming the field.
async function refused(name, body, param, words) {
  try {
    await client.chat.completions.create({ ...ask, ...body });
    check(name, false, "no error");
  } catch (e) {
    check(name, e instanceof OpenAI.APIError && e.status === 400 && e.param === param &&
          words.every((w) => e.message.includes(w)), { status: e.status, param: e.param, message: e.message });
  }
}
const weather = tools[0].function;
await refused("a tool without a name", { tools: [{ type: "function", function: { parameters: weather.parameters } }] },
              "tools", ["tools[0].function.name"]);
await refused("duplicate names", { tools: [tools[0], tools[0]] }, "tools", ["tools[1].function.name", "get_weather"]);
await refused("tool_choice naming an absent tool", { tool_choice: { type: "function", function: { name: "nope" } } },
              "tool_choice", ["nope"]);
await refused("a tool message without tool_call_id", { messages: [...ask.messages, full.choices[0].message,
              { role: "tool", content: "21" }] }, "messages", ["messages[2].tool_call_id"]);
await refused("an unsupported schema keyword", { tools: [{ type: "function", function: { name: "tag",
              parameters: { type: "object", properties: { tags: { type: "object", patternProperties: { "^x": {} } } } } } }] },
              "tools", ["tools[0].function.parameters", "'tag'", "patternProperties", "/properties/tags"]);
await refused("tool_choice required without tools", { tools: undefined, tool_choice: "required" }, "tool_choice",
              ["needs 'tools'"]);

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);

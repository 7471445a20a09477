// The chat page: keeps the conversation in memory, sends it to /v1/chat/completions,
// shows the answer as it streams, and reports time to first token and tokens per second.
"use strict";

const $ = (id) => document.getElementById(id);
const conversation = [];   // {role, content} turns so far (the system prompt is added per request)
let modelName = null;
let controller = null;      // AbortController of the answer being written

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function loadModel() {
  try {
    const response = await fetch("/v1/models", { headers: headers() });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
    modelName = body.data[0].id;
    $("model-name").textContent = "model: " + modelName;
  } catch (err) {
    $("model-name").textContent = "not ready: " + err.message;
    setTimeout(loadModel, 2000);
  }
}

function addMessage(role, text) {
  const item = document.createElement("li");
  item.className = "message " + role;
  const label = document.createElement("span");
  label.className = "role";
  label.textContent = role === "user" ? "You" : "Assistant";
  const content = document.createElement("p");
  content.className = "content";
  content.textContent = text;
  const stats = document.createElement("p");
  stats.className = "stats";
  item.append(label, content, stats);
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
  return { item, content, stats };
}

function requestBody(stream) {
  const system = $("system").value.trim();
  const messages = (system ? [{ role: "system", content: system }] : []).concat(conversation);
  const body = {
    model: modelName, messages, stream,
    temperature: parseFloat($("temperature").value),
    max_tokens: parseInt($("max-tokens").value, 10) || 256,
  };
  if (stream) body.stream_options = { include_usage: true };
  return body;
}

// Reads server-sent events from a fetch response; calls onEvent for each JSON payload.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        onEvent(JSON.parse(data));
      }
    }
  }
}

function formatStats(t0, tFirst, tEnd, tokens, note) {
  const ttft = tFirst ? ((tFirst - t0) / 1000).toFixed(2) + " s" : "–";
  const seconds = (tEnd - (tFirst || t0)) / 1000;
  const rate = tokens > 1 && seconds > 0 ? ((tokens - 1) / seconds).toFixed(1) : "–";
  return `first token ${ttft} · ${rate} tok/s · ${tokens} tokens` + (note ? " · " + note : "");
}

// An attached picture travels as an OpenAI image_url part holding a base64 data URL.
function readImage(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function userContent(text, imageUrl) {
  if (!imageUrl) return text;
  return [{ type: "text", text }, { type: "image_url", image_url: { url: imageUrl } }];
}

function showImage(view, imageUrl) {
  const picture = document.createElement("img");
  picture.className = "attached";
  picture.src = imageUrl;
  picture.alt = "attached image";
  view.item.insertBefore(picture, view.content);
}

async function send(text, imageUrl) {
  conversation.push({ role: "user", content: userContent(text, imageUrl) });
  const sent = addMessage("user", text);
  if (imageUrl) showImage(sent, imageUrl);
  const view = addMessage("assistant", "");
  view.item.setAttribute("aria-busy", "true");
  const stream = $("stream").checked;
  controller = new AbortController();
  setBusy(true);
  const t0 = performance.now();
  let tFirst = 0, tokens = 0, answer = "", note = "";
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(requestBody(stream)),
      signal: controller.signal,
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error ? body.error.message : response.statusText);
    }
    if (stream) {
      await readEvents(response, (chunk) => {
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.usage) tokens = chunk.usage.completion_tokens;
        const choice = chunk.choices && chunk.choices[0];
        if (!choice || !choice.delta || choice.delta.role) return;
        if (!tFirst) tFirst = performance.now();
        if (!chunk.usage) tokens += 1;
        answer += choice.delta.content || "";
        view.content.textContent = answer;
      });
    } else {
      const body = await response.json();
      tFirst = performance.now();
      answer = body.choices[0].message.content;
      tokens = body.usage.completion_tokens;
      view.content.textContent = answer;
    }
  } catch (err) {
    if (err.name === "AbortError") note = "stopped";
    else { note = "error: " + err.message; view.stats.classList.add("error"); }
  }
  conversation.push({ role: "assistant", content: answer });
  view.stats.textContent = formatStats(t0, tFirst, performance.now(), tokens, note);
  view.item.removeAttribute("aria-busy");
  controller = null;
  setBusy(false);
}

function setBusy(busy) {
  $("send").disabled = busy;
  $("stop").disabled = !busy;
}

$("composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("input").value.trim();
  if (!text || controller) return;
  $("input").value = "";
  const file = $("image").files[0];
  $("image").value = "";
  send(text, file ? await readImage(file) : null);
});
$("input").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});
$("stop").addEventListener("click", () => controller && controller.abort());
$("clear").addEventListener("click", () => {
  if (controller) controller.abort();
  conversation.length = 0;
  $("messages").replaceChildren();
  $("input").focus();
});
$("temperature").addEventListener("input", () => {
  $("temperature-value").textContent = $("temperature").value;
});
$("api-key").addEventListener("change", loadModel);
loadModel();

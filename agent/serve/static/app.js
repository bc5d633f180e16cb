// zit's page: forms that send one request each and show its progress (server-sent events on the
// same connection: leaving the page cancels the job). User text only ever goes in as textContent.
"use strict";

function parseEvent(block) {
  let kind = "message";
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) kind = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  return data ? { kind, data: JSON.parse(data) } : null;
}

// POST `body` (JSON, or FormData as multipart) and call onEvent(kind, data) per event; resolves
// to the last event.
async function streamJob(url, body, onEvent) {
  const multipart = body instanceof FormData;
  const headers = multipart
    ? { Accept: "text/event-stream" }
    : { "Content-Type": "application/json", Accept: "text/event-stream" };
  const response = await fetch(url, {
    method: "POST",
    headers,
    body: multipart ? body : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (!response.ok) {
    let message = response.statusText;
    try {
      message = (await response.json()).error.message;
    } catch (err) {
      /* not JSON */
    }
    const failed = { kind: "failed", data: { message: `${response.status}: ${message}` } };
    onEvent(failed.kind, failed.data);
    return failed;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let last = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = parseEvent(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
      if (event) {
        last = event;
        onEvent(event.kind, event.data);
      }
    }
  }
  return last;
}

function describe(kind, data) {
  switch (kind) {
    case "queued": {
      const ahead = data.position > 1 ? `queued: ${data.position - 1} job(s) ahead` : "queued";
      return data.waiting_for ? `${ahead} (the models are still loading)` : ahead;
    }
    case "start":
      return "started";
    case "waiting":
      return `waiting for the models to load (at most ${Math.round(data.timeout_s)} s)`;
    case "loaded":
      return `the models are loaded (waited ${data.waited_s} s)`;
    case "write":
      return `write (${data.writer || "no writer: the idea as it is"}): ${data.description}`;
    case "assemble":
      return `assemble ${data.shape} sequence(s): ${data.tokens.join(", ")} tokens`;
    case "render":
      return `render attempt ${data.attempt}: ${data.images} image(s)`;
    case "judge":
      return `judge attempt ${data.attempt}: ${data.verdict} (${data.reason}; Vendi ${data.vendi.toFixed(2)} of ${data.count})` +
        (data.kinds && Object.keys(data.kinds).length
          ? `; measured: ${Object.entries(data.kinds).map(([k, v]) => `${k} ${v.verdict}`).join(", ")}` : "");
    case "escape":
      return `escape → attempt ${data.attempt}: ${data.lever}: ${data.detail}`;
    case "setting":
      return `setting ${data.command}: rendering again`;
    case "undo":
      return `undo: back to turn ${data.turns}`;
    case "pick":
      return data.image ? `start image picked (strength ${data.strength})` : "start image cleared";
    case "resume":
      return "finishing the turn an earlier process left unfinished";
    case "finish":
      return data.message ? `done: ${data.message}` : null;
    case "failed":
      return `error: ${data.message}`;
    case "cancelled":
      return `cancelled: ${data.message || ""}`;
    default:
      return null;
  }
}

class Progress {
  constructor(list) {
    this.list = list;
    this.step = null;
  }
  clear() {
    this.list.replaceChildren();
    this.step = null;
  }
  add(text, kind) {
    const item = document.createElement("li");
    item.textContent = text;
    item.className = kind;
    this.list.append(item);
    return item;
  }
  show(kind, data) {
    if (kind === "step") {
      this.step = this.step || this.add("", "step");
      this.step.textContent = `render step ${data.step} of ${data.steps}`;
      return;
    }
    if (kind === "rendered") {
      this.step = null;
      const item = this.add(`rendered attempt ${data.attempt}`, kind);
      const grid = document.createElement("div");
      grid.className = "grid small";
      for (const id of data.images) grid.append(image({ id, url: `/images/${id}.png` }));
      item.append(grid);
      return;
    }
    const text = describe(kind, data);
    if (text) this.add(text, kind === "judge" ? `judge ${data.verdict}` : kind);
  }
}

function image(ref, caption) {
  const figure = document.createElement("figure");
  const img = document.createElement("img");
  img.src = ref.url;
  img.alt = ref.seed === undefined || ref.seed === null ? "image" : `seed ${ref.seed}`;
  figure.append(img);
  if (caption) {
    const text = document.createElement("figcaption");
    text.textContent = caption;
    figure.append(text);
  }
  return figure;
}

// The declared options a form sets (empty fields are left out: the server's defaults apply).
function formOptions(form) {
  const values = {};
  for (const name of ["count", "seed"]) {
    const field = form.elements[name];
    if (field && field.value !== "") values[name] = Number(field.value);
  }
  if (form.elements.size && form.elements.size.value.trim()) values.size = form.elements.size.value.trim();
  if (form.elements.ruts) values.ruts = form.elements.ruts.checked;
  return values;
}

async function run(form, url, body, progress, onDone) {
  const buttons = form.querySelectorAll("button");
  buttons.forEach((b) => (b.disabled = true));
  progress.clear();
  document.body.dataset.busy = "1";
  try {
    const last = await streamJob(url, body, (kind, data) => progress.show(kind, data));
    if (last && last.kind === "done") onDone(last.data);
  } catch (err) {
    progress.add(`error: ${err}`, "failed");
  } finally {
    buttons.forEach((b) => (b.disabled = false));
    delete document.body.dataset.busy;
  }
}

function chatPage() {
  const progress = new Progress(document.getElementById("progress"));
  const start = document.getElementById("new-session");
  start.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = start.elements.name.value.trim();
    const body = { name, idea: start.elements.idea.value, ...formOptions(start) };
    run(start, start.dataset.url, body, progress, () => location.assign(`/sessions/${encodeURIComponent(name)}`));
  });
  const message = document.getElementById("message");
  if (!message) return;
  const answer = document.getElementById("answer");
  const send = (text) =>
    run(message, message.dataset.url, { text }, progress, (view) => {
      if (view.answer) {
        answer.hidden = false;
        answer.textContent = view.answer;
      } else {
        location.reload();
      }
    });
  message.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = message.elements.text.value.trim();
    if (text) send(text);
  });
  for (const button of message.querySelectorAll("[data-command]")) {
    button.addEventListener("click", () => {
      const arg = button.dataset.arg ? message.elements[button.dataset.arg].value.trim() : "";
      send(arg ? `${button.dataset.command} ${arg}` : button.dataset.command);
    });
  }
  latestFigures().forEach((figure, i) => imageTools(figure, i + 1, send, progress));
}

// The images the person last saw (the newest turn that rendered, its last attempt): the ones
// `/pick N` and `/vary subtle N` count, from 1.
function latestFigures() {
  const turns = [...document.querySelectorAll(".turn")].filter((t) => t.querySelector(".attempt .grid figure"));
  if (!turns.length) return [];
  const attempts = turns[turns.length - 1].querySelectorAll(".attempt");
  return [...attempts[attempts.length - 1].querySelectorAll(".grid figure")];
}

function imageTools(figure, index, send, progress) {
  const tools = document.createElement("div");
  tools.className = "tools";
  const add = (label, onClick) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = label;
    button.addEventListener("click", onClick);
    tools.append(button);
  };
  add("Vary subtle", () => send(`/vary subtle ${index}`));
  add("Vary strong", () => send(`/vary strong ${index}`));
  add("Use as start", () => send(`/pick ${index}`));
  add("Repaint", () => repaint(figure, progress));
  figure.append(tools);
}

// A brush mask drawn over the image (white: redraw), sent with the image and the text to
// POST /api/edits; the repainted images appear after the figure.
function repaint(figure, progress) {
  if (figure.querySelector(".repaint")) return;
  const img = figure.querySelector("img");
  const form = document.createElement("form");
  form.className = "repaint";
  const view = document.createElement("canvas");
  const mask = document.createElement("canvas");
  for (const canvas of [view, mask]) {
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
  }
  const shown = view.getContext("2d");
  shown.drawImage(img, 0, 0);
  const drawn = mask.getContext("2d");
  drawn.fillStyle = "black";
  drawn.fillRect(0, 0, mask.width, mask.height);
  const radius = Math.max(3, Math.round(mask.width / 24));
  let painting = false;
  const dab = (event) => {
    const box = view.getBoundingClientRect();
    const x = ((event.clientX - box.left) * view.width) / box.width;
    const y = ((event.clientY - box.top) * view.height) / box.height;
    for (const [context, colour] of [[shown, "rgba(255, 0, 80, 0.5)"], [drawn, "white"]]) {
      context.fillStyle = colour;
      context.beginPath();
      context.arc(x, y, radius, 0, 2 * Math.PI);
      context.fill();
    }
  };
  view.addEventListener("pointerdown", (event) => {
    painting = true;
    dab(event);
  });
  view.addEventListener("pointermove", (event) => painting && dab(event));
  window.addEventListener("pointerup", () => (painting = false));
  const text = document.createElement("input");
  text.name = "idea";
  text.placeholder = "what to put there";
  text.required = true;
  const submit = document.createElement("button");
  submit.type = "submit";
  submit.textContent = "Repaint";
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.textContent = "Cancel";
  cancel.addEventListener("click", () => form.remove());
  form.append(view, text, submit, cancel);
  figure.append(form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = new FormData();
    body.append("idea", text.value);
    body.append("image", await (await fetch(img.src, { credentials: "same-origin" })).blob(), "image.png");
    body.append("mask", await new Promise((resolve) => mask.toBlob(resolve, "image/png")), "mask.png");
    run(form, "/api/edits", body, progress, (done) => {
      for (const ref of done.images) figure.after(image(ref, `repainted, seed ${ref.seed}`));
    });
  });
}

function generatePage() {
  const form = document.getElementById("generate");
  const progress = new Progress(document.getElementById("progress"));
  const result = document.getElementById("result");
  const outcome = document.getElementById("outcome");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    result.replaceChildren();
    outcome.textContent = "";
    const body = { idea: form.elements.idea.value, ...formOptions(form) };
    run(form, form.dataset.url, body, progress, (done) => {
      outcome.textContent = `${done.final_verdict || "rendered"}: ${done.message}`;
      for (const ref of done.images) result.append(image(ref, `seed ${ref.seed}`));
    });
  });
}

function historyPage() {
  const progress = new Progress(document.getElementById("progress"));
  for (const button of document.querySelectorAll("[data-render]")) {
    button.addEventListener("click", () => {
      const figure = button.closest("figure");
      run(figure, `/api/images/${button.dataset.render}/render`, {}, progress, (done) => {
        // what the record said that could not be kept, or why the pixels may differ
        const differs = [...(done.not_kept || []), ...(done.note ? [done.note] : [])];
        const how = done.exact ? "the same settings and batch" : differs.join("; ");
        for (const ref of done.images) {
          figure.after(image(ref, `rendered again, seed ${ref.seed}: ${how}`));
        }
      });
    });
  }
}

async function watchStatus() {
  const badge = document.getElementById("status");
  while (badge && badge.textContent === "loading") {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    try {
      const health = await (await fetch("/health")).json();
      badge.textContent = health.status;
      badge.className = `status ${health.status}`;
    } catch (err) {
      /* try again */
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "chat") chatPage();
  else if (page === "generate") generatePage();
  else if (page === "history") historyPage();
  watchStatus();
});

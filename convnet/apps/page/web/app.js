// The page of `convnet serve`. Every number is computed by the server's NumPy engine;
// this script only draws. State worth reading from outside (the browser test and the
// latency benchmark do) lives in window.convnet.
"use strict";

const state = {
  model: null,          // GET /api/model
  result: null,         // last POST /api/predict answer
  blob: null,           // the drawing sent with that answer (PNG)
  inspect: null,        // last POST /api/inspect answer
  backprop: null,       // last POST /api/backprop answer
  label: null,          // the true label chosen in Back-propagate
  inspectLayer: null,
  inspectChannel: 0,
  updates: 0,           // answers drawn so far
  busy: false,          // a drawing is being sent, or strokes wait to be
};
// Stroke-to-update latencies in milliseconds: from the first pointer event not yet
// drawn to the end of drawing the answer that includes it.
// parts: for each update, milliseconds spent encoding the drawing, waiting for the
// server's answer and drawing it.
const stats = { latencies: [], parts: [] };
window.convnet = { state, stats };

const $ = (selector) => document.querySelector(selector);

// ------------------------------------------------------------------ colours
// Non-negative values: white (0) to black (max). Signed values: blue (negative),
// white (0), red (positive), on a scale symmetric around zero.
function colourScale(min, max) {
  if (min < 0) {
    const limit = Math.max(-min, max) || 1;
    return (v) => {
      const t = Math.max(-1, Math.min(1, v / limit));
      if (t >= 0) return [255, Math.round(255 * (1 - t)), Math.round(255 * (1 - t))];
      return [Math.round(255 * (1 + t)), Math.round(255 * (1 + t)), 255];
    };
  }
  const limit = max || 1;
  return (v) => {
    const g = Math.round(255 * (1 - Math.max(0, Math.min(1, v / limit))));
    return [g, g, g];
  };
}

function paint(canvas, values, width, height, scale) {
  if (canvas.width !== width) canvas.width = width;
  if (canvas.height !== height) canvas.height = height;
  const context = canvas.getContext("2d");
  const image = context.createImageData(width, height);
  for (let i = 0; i < width * height; i++) {
    const [r, g, b] = scale(values[i]);
    image.data[4 * i] = r;
    image.data[4 * i + 1] = g;
    image.data[4 * i + 2] = b;
    image.data[4 * i + 3] = 255;
  }
  context.putImageData(image, 0, 0);
}

function bars(canvas, values, min, max, highlight) {
  const context = canvas.getContext("2d");
  const width = canvas.width, height = canvas.height;
  context.clearRect(0, 0, width, height);
  const low = Math.min(0, min), high = Math.max(0, max);
  const span = (high - low) || 1;
  const zero = height * high / span;
  const step = width / values.length;
  values.forEach((v, i) => {
    context.fillStyle = i === highlight ? "#2b6cb0" : (v < 0 ? "#6b8fd6" : "#d65f5f");
    const top = zero - height * Math.max(v, 0) / span;
    const bottom = zero - height * Math.min(v, 0) / span;
    context.fillRect(i * step, top, Math.max(step - (step > 3 ? 1 : 0), 1), bottom - top);
  });
  context.fillStyle = "#000";
  context.fillRect(0, zero, width, 1);
}

// The server sends the values it only draws as bytes: code k stands for
// min + k * (max - min) / 255, channels first. Decode them into layer.values:
// one array of h * w values per channel, or one array for a vector.
function decodeLayer(layer) {
  if (layer.values) return layer;
  const text = atob(layer.codes);
  const span = layer.max - layer.min;
  const values = new Float32Array(text.length);
  for (let i = 0; i < text.length; i++) values[i] = layer.min + text.charCodeAt(i) * span / 255;
  if (layer.kind === "maps") {
    const [h, w, c] = layer.shape;
    layer.values = Array.from({ length: c }, (_, k) => values.subarray(k * h * w, (k + 1) * h * w));
  } else {
    layer.values = Array.from(values);
  }
  return layer;
}

function fmt(value) {
  return Number(value).toFixed(4);
}

// ------------------------------------------------------------------ requests
async function postImage(url, blob) {
  const response = await fetch(url, { method: "POST", body: blob,
                                      headers: { "Content-Type": "image/png" } });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

async function getJSON(url) {
  const response = await fetch(url);
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

// ------------------------------------------------------------------ views
function showView(name) {
  document.querySelectorAll(".view").forEach((v) => v.classList.remove("active"));
  document.querySelectorAll("#tabs button").forEach((b) =>
    b.classList.toggle("active", b.dataset.view === name));
  $("#view-" + name).classList.add("active");
  if (name === "browse" && !browseLoaded) loadBrowse();
  if (name === "backprop" && state.blob && state.label !== null) runBackprop();
  if (name === "inspect") { drawInspectMap(); refreshInspect(); }
}

// ------------------------------------------------------------------ Draw
const drawCanvas = $("#draw");
const pen = drawCanvas.getContext("2d");
let drawing = false, last = null;
let inFlight = false, pending = false, strokeStart = null;
const sendCanvas = document.createElement("canvas");
sendCanvas.width = sendCanvas.height = 140;
const sendContext = sendCanvas.getContext("2d");
sendContext.imageSmoothingQuality = "high";

function clearDrawing() {
  pen.fillStyle = "#000";
  pen.fillRect(0, 0, drawCanvas.width, drawCanvas.height);
}

function canvasPoint(event) {
  const box = drawCanvas.getBoundingClientRect();
  return [(event.clientX - box.left) * drawCanvas.width / box.width,
          (event.clientY - box.top) * drawCanvas.height / box.height];
}

function strokeTo(point) {
  pen.strokeStyle = "#fff";
  pen.fillStyle = "#fff";
  pen.lineWidth = 20;
  pen.lineCap = "round";
  pen.lineJoin = "round";
  pen.beginPath();
  if (last) {
    pen.moveTo(last[0], last[1]);
    pen.lineTo(point[0], point[1]);
    pen.stroke();
  } else {
    pen.arc(point[0], point[1], 10, 0, 2 * Math.PI);
    pen.fill();
  }
  last = point;
  if (strokeStart === null) strokeStart = performance.now();
  requestUpdate();
}

drawCanvas.addEventListener("pointerdown", (event) => {
  drawing = true;
  last = null;
  drawCanvas.setPointerCapture(event.pointerId);
  strokeTo(canvasPoint(event));
});
drawCanvas.addEventListener("pointermove", (event) => {
  if (drawing) strokeTo(canvasPoint(event));
});
for (const name of ["pointerup", "pointercancel"]) {
  drawCanvas.addEventListener(name, () => { drawing = false; last = null; });
}
$("#clear").addEventListener("click", () => {
  clearDrawing();
  state.result = null;
  state.blob = null;
  $("#prediction").textContent = "?";
  $("#status").textContent = "draw with the mouse or a finger";
});

// One request at a time: strokes made meanwhile are sent together when it returns.
function requestUpdate() {
  state.busy = true;
  if (inFlight) { pending = true; return; }
  inFlight = true;
  pending = false;
  const started = strokeStart;
  strokeStart = null;
  const encoding = performance.now();
  // Send the drawing at half size: encoding 280x280 as PNG takes several times
  // longer, and the server shrinks the digit to 20x20 pixels anyway.
  sendContext.drawImage(drawCanvas, 0, 0, sendCanvas.width, sendCanvas.height);
  // toDataURL encodes at once; toBlob would wait for a free turn of the browser.
  const blob = dataUrlToBlob(sendCanvas.toDataURL("image/png"));
  sendDrawing(blob, started, encoding);
}

function dataUrlToBlob(url) {
  const [head, data] = url.split(",");
  const text = atob(data);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return new Blob([bytes], { type: head.slice(5, head.indexOf(";")) });
}

async function sendDrawing(blob, started, encoding) {
  try {
    const sent = performance.now();
    const result = await postImage("/api/predict", blob);
    const received = performance.now();
    state.result = result;
    state.blob = blob;
    renderDraw(result);
    state.updates += 1;
    const done = performance.now();
    stats.latencies.push(done - started);
    stats.parts.push({ encode: sent - encoding, server: received - sent, draw: done - received });
    $("#status").textContent = "";
    if (state.inspect && $("#view-inspect").classList.contains("active")) refreshInspect();
  } catch (error) {
    $("#status").textContent = error.message;
  } finally {
    inFlight = false;
    if (pending) requestUpdate(); else state.busy = false;
  }
}

function renderDraw(result) {
  const seen = $("#seen");
  paint(seen, result.image, 28, 28, colourScale(0, 1));
  $("#prediction").textContent = result.class_names[result.prediction];
  renderProbabilities($("#probabilities"), result.probabilities, result.class_names,
                      result.prediction);
  renderLayers($("#layers"), result.layers, true);
}

function renderProbabilities(container, probabilities, names, best) {
  container.replaceChildren(...probabilities.map((p, k) => {
    const row = document.createElement("div");
    row.className = "bar" + (k === best ? " best" : "");
    row.dataset.class = k;
    row.innerHTML = `<span class="name">${names[k]}</span>` +
      `<span class="fill" style="width:${Math.round(200 * p)}px"></span>` +
      `<span class="value">${(100 * p).toFixed(1)} %</span>`;
    return row;
  }));
}

function inspectable(name) {
  if (!state.model) return false;
  const layer = state.model.layers.find((l) => l.name === name);
  return Boolean(layer && layer.inspectable);
}

// Draw every layer: (h, w, c) outputs as one picture per channel, vectors as bars.
function renderLayers(container, layers, clickable) {
  layers.forEach(decodeLayer);
  // While drawing, the layers keep their shapes: repaint the pictures in place
  // instead of building the page's elements again on every update.
  const signature = layers.map((l) => l.name + ":" + l.shape.join("x")).join(",");
  if (container.dataset.signature === signature) {
    layers.forEach((layer, index) => repaintLayer(container.children[index], layer));
    return;
  }
  container.dataset.signature = signature;
  const rows = layers.map((layer) => {
    const row = document.createElement("div");
    row.className = "layer";
    row.dataset.layer = layer.name;
    const title = document.createElement("div");
    title.className = "title";
    title.textContent = layerTitle(layer);
    row.appendChild(title);
    const maps = document.createElement("div");
    maps.className = "maps";
    if (layer.kind === "maps") {
      const [h, w] = layer.shape;
      const zoom = Math.max(1, Math.round(56 / h));
      const scale = colourScale(layer.min, layer.max);
      layer.values.forEach((values, channel) => {
        const canvas = document.createElement("canvas");
        paint(canvas, values, w, h, scale);
        canvas.style.width = `${w * zoom}px`;
        canvas.style.height = `${h * zoom}px`;
        canvas.dataset.layer = layer.name;
        canvas.dataset.channel = channel;
        canvas.title = `${layer.name} channel ${channel}`;
        if (clickable && inspectable(layer.name)) {
          canvas.classList.add("clickable");
          canvas.addEventListener("click", (event) => {
            const box = canvas.getBoundingClientRect();
            const col = Math.floor((event.clientX - box.left) * w / box.width);
            const row = Math.floor((event.clientY - box.top) * h / box.height);
            state.inspectLayer = layer.name;
            state.inspectChannel = channel;
            syncInspectSelectors();
            showView("inspect");
            runInspect(row, col);
          });
        }
        maps.appendChild(canvas);
      });
    } else {
      const canvas = document.createElement("canvas");
      canvas.className = "strip";
      canvas.width = Math.min(720, Math.max(200, 6 * layer.values.length));
      canvas.height = 50;
      canvas.dataset.layer = layer.name;
      const best = layer.values.length <= 10 ?
        layer.values.indexOf(Math.max(...layer.values)) : -1;
      bars(canvas, layer.values, layer.min, layer.max, best);
      maps.appendChild(canvas);
    }
    row.appendChild(maps);
    return row;
  });
  container.replaceChildren(...rows);
}

function layerTitle(layer) {
  return `${layer.name}: ${layer.shape.join("\u00d7")}` +
    `  (min ${fmt(layer.min)}, max ${fmt(layer.max)})`;
}

function repaintLayer(row, layer) {
  row.querySelector(".title").textContent = layerTitle(layer);
  const canvases = row.querySelectorAll("canvas");
  if (layer.kind === "maps") {
    const [h, w] = layer.shape;
    const scale = colourScale(layer.min, layer.max);
    layer.values.forEach((values, channel) => paint(canvases[channel], values, w, h, scale));
  } else {
    const best = layer.values.length <= 10 ?
      layer.values.indexOf(Math.max(...layer.values)) : -1;
    bars(canvases[0], layer.values, layer.min, layer.max, best);
  }
}

// ------------------------------------------------------------------ Inspect
function syncInspectSelectors() {
  const layerSelect = $("#inspect-layer");
  if (state.inspectLayer) layerSelect.value = state.inspectLayer;
  fillChannels();
  $("#inspect-channel").value = String(state.inspectChannel);
}

function fillChannels() {
  const layer = state.model.layers.find((l) => l.name === $("#inspect-layer").value);
  const channels = layer ? layer.shape[2] : 0;
  const select = $("#inspect-channel");
  const keep = select.value;
  select.replaceChildren(...Array.from({ length: channels }, (_, k) => {
    const option = document.createElement("option");
    option.value = String(k);
    option.textContent = String(k);
    return option;
  }));
  if (keep && Number(keep) < channels) select.value = keep;
}

function drawInspectMap() {
  const canvas = $("#inspect-map");
  if (!state.result || !state.inspectLayer) return;
  const layer = state.result.layers.find((l) => l.name === state.inspectLayer);
  if (!layer) return;
  const [h, w] = layer.shape;
  paint(canvas, layer.values[state.inspectChannel], w, h, colourScale(layer.min, layer.max));
  if (state.inspect && state.inspect.layer === layer.name &&
      state.inspect.channel === state.inspectChannel) {
    const context = canvas.getContext("2d");
    context.fillStyle = "rgba(255, 140, 0, 0.85)";
    context.fillRect(state.inspect.col, state.inspect.row, 1, 1);
  }
}

$("#inspect-layer").addEventListener("change", () => {
  state.inspectLayer = $("#inspect-layer").value;
  fillChannels();
  state.inspectChannel = Number($("#inspect-channel").value);
  drawInspectMap();
});
$("#inspect-channel").addEventListener("change", () => {
  state.inspectChannel = Number($("#inspect-channel").value);
  drawInspectMap();
});
$("#inspect-map").addEventListener("click", (event) => {
  const canvas = $("#inspect-map");
  const box = canvas.getBoundingClientRect();
  runInspect(Math.floor((event.clientY - box.top) * canvas.height / box.height),
             Math.floor((event.clientX - box.left) * canvas.width / box.width));
});

let inspectAsked = 0;

async function runInspect(row, col) {
  if (!state.blob) {
    $("#inspect-where").textContent = "draw a digit in the Draw view first";
    return;
  }
  const query = new URLSearchParams({ layer: state.inspectLayer, row, col,
                                      channel: state.inspectChannel });
  const asked = ++inspectAsked;
  try {
    const answer = await postImage("/api/inspect?" + query, state.blob);
    if (asked !== inspectAsked) return;   // a later click has been sent meanwhile
    state.inspect = answer;
    renderInspect(state.inspect);
    drawInspectMap();
  } catch (error) {
    $("#inspect-where").textContent = error.message;
  }
}

function refreshInspect() {
  const previous = state.inspect;
  if (previous && previous.layer === state.inspectLayer) runInspect(previous.row, previous.col);
}

function grid(caption, cube, channel, padding, kind) {
  const table = document.createElement("table");
  table.className = "grid";
  table.dataset.kind = kind;
  table.dataset.channel = channel;
  const title = table.createCaption();
  title.textContent = caption;
  cube.forEach((line, i) => {
    const tr = table.insertRow();
    line.forEach((cell, j) => {
      const td = tr.insertCell();
      const value = cell[channel];
      td.textContent = fmt(value);
      td.dataset.value = String(value);
      td.title = String(value);
      if (padding[i][j]) td.classList.add("pad");
    });
  });
  return table;
}

function renderInspect(answer) {
  const result = $("#inspect-result");
  const channels = answer.window[0][0].length;
  $("#inspect-where").textContent =
    `${answer.layer}, channel ${answer.channel}, row ${answer.row}, column ${answer.col}`;
  const parts = [];
  const heading = document.createElement("p");
  heading.className = "note";
  heading.textContent = `Output pixel (row ${answer.row}, column ${answer.col}) of channel ` +
    `${answer.channel} of ${answer.conv}: the ${answer.window.length}\u00d7` +
    `${answer.window[0].length}\u00d7${channels} window of its input (grey cells are the ` +
    `zeros of '${answer.padding_mode}' padding), times kernel ${answer.channel}, summed.`;
  parts.push(heading);
  for (let c = 0; c < channels; c++) {
    const row = document.createElement("div");
    row.className = "grids";
    const suffix = channels > 1 ? ` (input channel ${c})` : "";
    row.appendChild(grid("window" + suffix, answer.window, c, answer.padding, "window"));
    row.appendChild(grid("\u00d7 kernel" + suffix, answer.kernel, c, answer.padding, "kernel"));
    row.appendChild(grid("= products" + suffix, answer.products, c, answer.padding,
                         "products"));
    parts.push(row);
  }
  const equation = document.createElement("div");
  equation.className = "equation";
  const line = (label, id, value) =>
    `<div>${label} <span id="${id}" data-value="${value}" title="${value}">${fmt(value)}` +
    `</span></div>`;
  let html = line("sum of the products =", "inspect-sum", answer.sum) +
    line("bias =", "inspect-bias", answer.bias) +
    line("sum + bias =", "inspect-sum-bias", answer.sum_plus_bias) +
    line(`conv_forward's output z of ${answer.conv} =`, "inspect-output", answer.output);
  if (answer.activation) {
    html += line(`${answer.activation}(z) = max(z, 0) =`, "inspect-activated", answer.activated);
  }
  equation.innerHTML = html;
  parts.push(equation);
  result.replaceChildren(...parts);
}

// ------------------------------------------------------------------ Back-propagate
function setupLabels() {
  const container = $("#label-buttons");
  container.replaceChildren(...state.model.class_names.map((name, k) => {
    const button = document.createElement("button");
    button.textContent = name;
    button.dataset.label = k;
    button.addEventListener("click", () => {
      state.label = k;
      container.querySelectorAll("button").forEach((b) =>
        b.classList.toggle("active", Number(b.dataset.label) === k));
      runBackprop();
    });
    return button;
  }));
}

async function runBackprop() {
  if (!state.blob) {
    $("#backprop-loss").textContent = "draw a digit in the Draw view first";
    return;
  }
  try {
    const answer = await postImage("/api/backprop?label=" + state.label, state.blob);
    state.backprop = answer;
    const names = state.model.class_names;
    $("#backprop-loss").textContent = `true label ${names[answer.label]}, predicted ` +
      `${names[answer.prediction]} (p = ${answer.probabilities[answer.label].toFixed(4)} for ` +
      `the true label): cross-entropy loss ${answer.loss.toFixed(4)}`;
    renderLayers($("#kernel-gradients"), [answer.kernels, answer.kernel_gradient], false);
    renderLayers($("#gradients"), answer.gradients.map((g) =>
      Object.assign({}, g, { name: "dL/d " + g.name })), false);
  } catch (error) {
    $("#backprop-loss").textContent = error.message;
  }
}

// ------------------------------------------------------------------ Browse
let browseLoaded = false;

async function loadBrowse() {
  browseLoaded = true;
  const split = $("#browse-split").value;
  $("#browse-summary").textContent = "computing the predictions...";
  try {
    const summary = await getJSON("/api/browse?split=" + split);
    $("#browse-summary").textContent = `${summary.count} images, accuracy ` +
      `${(100 * summary.accuracy).toFixed(2)} %, ${summary.mistakes} mistakes`;
    renderConfusion(summary);
  } catch (error) {
    $("#browse-summary").textContent = error.message;
  }
}

function renderConfusion(summary) {
  const table = $("#confusion");
  const names = summary.class_names;
  const head = "<tr><th>true \\ predicted</th>" + names.map((n) => `<th>${n}</th>`).join("") +
    "</tr>";
  table.innerHTML = head + summary.matrix.map((line, t) => `<tr><th>${names[t]}</th>` +
    line.map((count, p) => `<td data-true="${t}" data-predicted="${p}" class="` +
      `${t === p ? "diag" : "wrong"}${count ? " some" : ""}">${count}</td>`).join("") +
    "</tr>").join("");
  table.querySelectorAll("td").forEach((td) => td.addEventListener("click", () => {
    table.querySelectorAll("td.selected").forEach((c) => c.classList.remove("selected"));
    td.classList.add("selected");
    showImages(`images?split=${summary.split}&true=${td.dataset.true}` +
               `&predicted=${td.dataset.predicted}`,
               `true ${names[td.dataset.true]}, predicted ${names[td.dataset.predicted]}`);
  }));
}

async function showImages(query, caption) {
  const names = state.model.class_names;
  try {
    const answer = await getJSON("/api/browse/" + query);
    $("#browse-caption").textContent = `${caption}: ${answer.total} images` +
      (answer.total > answer.images.length ? ` (the first ${answer.images.length} shown)` : "") +
      "; each titled prediction (truth).";
    $("#browse-images").replaceChildren(...answer.images.map((item) => {
      const box = document.createElement("div");
      box.className = "thumb" + (item.label === item.predicted ? "" : " wrong");
      const canvas = document.createElement("canvas");
      paint(canvas, item.pixels, 28, 28, colourScale(0, 1));
      box.appendChild(canvas);
      box.append(`${names[item.predicted]} (${names[item.label]}) #${item.index}`);
      box.title = `image ${item.index}: p = ${item.confidence}`;
      return box;
    }));
  } catch (error) {
    $("#browse-caption").textContent = error.message;
  }
}

$("#browse-split").addEventListener("change", loadBrowse);
$("#browse-mistakes").addEventListener("click", () =>
  showImages("mistakes?split=" + $("#browse-split").value, "every mistake"));

// ------------------------------------------------------------------ Watch training
const watched = [];

function drawChart() {
  const canvas = $("#watch-chart");
  const context = canvas.getContext("2d");
  const width = canvas.width, height = canvas.height, margin = 30;
  context.clearRect(0, 0, width, height);
  context.strokeStyle = "#999";
  context.strokeRect(margin, 10, width - 2 * margin, height - margin - 10);
  if (!watched.length) return;
  const steps = watched.map((e) => e.step);
  const first = Math.min(...steps), lastStep = Math.max(...steps) || 1;
  const maxLoss = Math.max(...watched.map((e) => e.loss)) || 1;
  const x = (step) => margin + (width - 2 * margin) * (step - first) / ((lastStep - first) || 1);
  const plot = (value, top, colour) => {
    context.strokeStyle = colour;
    context.beginPath();
    let started = false;
    for (const event of watched) {
      const v = value(event);
      if (v === null || v === undefined) continue;
      const y = 10 + (height - margin - 10) * (1 - v / top);
      if (started) context.lineTo(x(event.step), y); else context.moveTo(x(event.step), y);
      started = true;
    }
    context.stroke();
  };
  plot((e) => e.loss, maxLoss, "#2b6cb0");
  plot((e) => e.accuracy, 1, "#dd6b20");
  context.fillStyle = "#333";
  context.fillText(`loss (blue, top ${maxLoss.toFixed(2)}), accuracy (orange, 0 to 1); ` +
                   `steps ${first} to ${lastStep}`, margin, height - 8);
}

function watchTraining() {
  if (!state.model || !state.model.training) return;
  const source = new EventSource("/api/train/events");
  source.onerror = () => {
    if (watched.length) $("#watch-status").textContent += " (the stream has stopped: the " +
      "training has ended, or the server has)";
  };
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    watched.push(event);
    const accuracy = event.accuracy === null ? "" :
      `, validation-slice accuracy ${(100 * event.accuracy).toFixed(1)} %`;
    $("#watch-status").textContent = `epoch ${event.epoch}, step ${event.step}: loss ` +
      `${event.loss.toFixed(4)}${accuracy}`;
    drawChart();
    let min = 0, max = 0;
    for (const kernel of event.kernels) {
      for (const v of kernel) { min = Math.min(min, v); max = Math.max(max, v); }
    }
    renderLayers($("#watch-filters"), [{ name: "conv1 kernels", kind: "maps",
      shape: event.kernel_shape.slice(0, 2).concat([event.kernels.length]), min, max,
      values: event.kernels }], false);
  };
}

// ------------------------------------------------------------------ start
async function start() {
  clearDrawing();
  document.querySelectorAll("#tabs button").forEach((button) =>
    button.addEventListener("click", () => showView(button.dataset.view)));
  state.model = await getJSON("/api/model");
  $("#checkpoint").textContent = state.model.checkpoint ?
    `checkpoint: ${state.model.checkpoint}` : "";
  const choices = state.model.layers.filter((l) => l.inspectable);
  $("#inspect-layer").replaceChildren(...choices.map((l) => {
    const option = document.createElement("option");
    option.value = l.name;
    option.textContent = l.name;
    return option;
  }));
  state.inspectLayer = choices.length ? choices[0].name : null;
  fillChannels();
  setupLabels();
  watchTraining();
  document.body.dataset.ready = "true";
}

start();

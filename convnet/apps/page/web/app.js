// The page of `convnet serve`. Every number is computed by the server's NumPy engine;
// these scripts only draw. paint.js turns the server's arrays into pictures and bars,
// views.js holds the Inspect, Back-propagate, Browse and Watch views, and this file the
// page's state, its requests, the Draw view and the start. State worth reading from
// outside (the browser test and the latency benchmark do) lives in window.convnet.
"use strict";

const state = {
  model: null,          // GET /api/model
  source: null,         // the input shown: {kind: "draw" | "upload", blob} or
                        // {kind: "dataset", split, index, label}
  result: null,         // last POST /api/predict answer
  inspect: null,        // last POST /api/inspect answer
  backprop: null,       // last POST /api/backprop answer
  label: null,          // the true label chosen in Back-propagate
  inspectLayer: null,
  inspectChannel: 0,
  updates: 0,           // answers drawn so far
  busy: false,          // an input is being sent, or strokes wait to be
  version: 0,           // bumped by every new input and by Clear: older answers are dropped
};
// Stroke-to-update latencies in milliseconds: from the first pointer event not yet
// drawn to the end of drawing the answer that includes it.
// parts: for each update, milliseconds spent encoding the drawing, waiting for the
// server's answer and drawing it.
const stats = { latencies: [], parts: [] };
window.convnet = { state, stats, watch };

const DATASET_NAMES = { "mnist": "MNIST", "fashion-mnist": "Fashion-MNIST",
                        "cifar10": "CIFAR-10", "happy": "Happy House", "signs": "SIGNS" };
const SPLIT_NAMES = { valid: "validation", test: "test" };

// ------------------------------------------------------------------ requests
async function postImage(url, blob) {
  const options = { method: "POST" };
  if (blob) {
    options.body = blob;
    options.headers = { "Content-Type": blob.type || "application/octet-stream" };
  }
  const response = await fetch(url, options);
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

// POST to `path` about the input `source`: its picture as the body, or the dataset
// image it names in the query.
function postInput(path, source, params) {
  const query = new URLSearchParams(params || {});
  if (source.kind === "dataset") {
    query.set("split", source.split);
    query.set("index", source.index);
  }
  const text = query.toString();
  return postImage(path + (text ? "?" + text : ""), source.kind === "dataset" ? null : source.blob);
}

// ------------------------------------------------------------------ views
function showView(name) {
  document.querySelectorAll(".view").forEach((v) => v.classList.remove("active"));
  document.querySelectorAll("#tabs button").forEach((b) =>
    b.classList.toggle("active", b.dataset.view === name));
  $("#view-" + name).classList.add("active");
  if (name === "browse" && !browseLoaded) loadBrowse();
  if (name === "backprop" && state.source) {
    if (state.label !== null) runBackprop();
    else $("#backprop-loss").textContent = "choose the true label of the input above";
  }
  if (name === "inspect") { drawInspectMap(); refreshInspect(); }
}

function inspectNote() {
  const some = state.model && state.model.layers.some((l) => l.inspectable);
  return some || !state.model ? "choose an input in the Draw view first, then click a pixel" :
    "This network has no convolution, so there is no pixel of a convolution to inspect.";
}

function inputChosenNote() {
  return state.model && state.model.input.drawable ?
    "draw with the mouse or a finger" : "pick an image of the dataset or upload a picture";
}

// ------------------------------------------------------------------ Draw: the sources
function showSource(name) {
  document.querySelectorAll("#sources button").forEach((b) =>
    b.classList.toggle("active", b.dataset.source === name));
  document.querySelectorAll(".source").forEach((panel) =>
    panel.classList.toggle("active", panel.id === "source-" + name));
  if (name === "pick" && !pickLoaded) loadPick();
}

// An input other than a drawing (a dataset image, an uploaded picture): one request.
let loading = 0;

function updateBusy() {
  state.busy = inFlight || pending || loading > 0;
}

async function showInput(source, note) {
  const version = ++state.version;
  loading += 1;
  updateBusy();
  $("#status").textContent = "computing...";
  try {
    const result = await postInput("/api/predict", source);
    if (version !== state.version) return;   // Clear, or another input, came meanwhile
    state.source = source;
    acceptResult(result);
    $("#status").textContent = note;
  } catch (error) {
    if (version === state.version) $("#status").textContent = error.message;
  } finally {
    loading -= 1;
    updateBusy();
  }
}

function acceptResult(result) {
  state.result = result;
  renderDraw(result);
  state.updates += 1;
  if (state.inspect && $("#view-inspect").classList.contains("active")) refreshInspect();
}

let pickLoaded = false, pickAsked = 0;

async function loadPick() {
  pickLoaded = true;
  const split = $("#pick-split").value;
  const asked = ++pickAsked;
  $("#pick-images").replaceChildren();
  $("#pick-caption").textContent = `loading the ${SPLIT_NAMES[split]} images...`;
  try {
    const answer = await getJSON("/api/browse/images?split=" + split);
    if (asked !== pickAsked) return;   // another split was chosen meanwhile
    const names = state.model.class_names;
    $("#pick-caption").textContent = `the first ${answer.images.length} of the ` +
      `${answer.total} ${SPLIT_NAMES[split]} images: click one`;
    $("#pick-images").replaceChildren(...answer.images.map((item) => {
      const box = thumbnail(item, names[item.label]);
      box.dataset.index = item.index;
      box.addEventListener("click", () => {
        document.querySelectorAll("#pick-images .thumb").forEach((t) =>
          t.classList.toggle("chosen", t === box));
        showInput({ kind: "dataset", split, index: item.index, label: item.label },
                  `${SPLIT_NAMES[split]} image ${item.index}, truth: ${names[item.label]}`);
      });
      return box;
    }));
  } catch (error) {
    if (asked === pickAsked) $("#pick-caption").textContent = error.message;
  }
}

// A dataset image from the Browse answers (bytes in `codes`, shape (h, w, c)), with a caption.
$("#pick-split").addEventListener("change", loadPick);
$("#upload").addEventListener("change", () => {
  const file = $("#upload").files[0];
  if (file) showInput({ kind: "upload", blob: file }, `uploaded: ${file.name}`);
});
document.querySelectorAll("#sources button").forEach((button) =>
  button.addEventListener("click", () => showSource(button.dataset.source)));

// ------------------------------------------------------------------ Draw: the canvas
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
  if (state.source && state.source.kind !== "draw") {
    // The drawing replaces a picked or uploaded input: start from a black canvas.
    state.version += 1;
    state.source = null;
    clearDrawing();
  }
  strokeTo(canvasPoint(event));
});
drawCanvas.addEventListener("pointermove", (event) => {
  if (drawing) strokeTo(canvasPoint(event));
});
for (const name of ["pointerup", "pointercancel"]) {
  drawCanvas.addEventListener(name, () => { drawing = false; last = null; });
}

// Clear forgets the input and everything computed from it, in every view.
function clearAll() {
  state.version += 1;
  clearDrawing();
  state.source = null;
  state.result = null;
  state.inspect = null;
  state.backprop = null;
  state.label = null;
  $("#prediction").textContent = "?";
  $("#status").textContent = inputChosenNote();
  blank($("#seen"));
  $("#probabilities").replaceChildren();
  for (const id of ["#layers", "#kernel-gradients", "#gradients"]) {
    $(id).replaceChildren();
    delete $(id).dataset.signature;
  }
  blank($("#inspect-map"));
  $("#inspect-result").replaceChildren();
  $("#inspect-where").textContent = inspectNote();
  $("#backprop-loss").textContent = "choose an input in the Draw view first";
  document.querySelectorAll("#label-buttons button").forEach((b) =>
    b.classList.remove("active"));
  document.querySelectorAll("#pick-images .thumb").forEach((t) => t.classList.remove("chosen"));
  $("#upload").value = "";
}

$("#clear").addEventListener("click", clearAll);

// One request at a time: strokes made meanwhile are sent together when it returns.
function requestUpdate() {
  if (inFlight) { pending = true; updateBusy(); return; }
  inFlight = true;
  pending = false;
  updateBusy();
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
  return new Blob([decodeBytes(data)], { type: head.slice(5, head.indexOf(";")) });
}

async function sendDrawing(blob, started, encoding) {
  const version = state.version;
  try {
    const sent = performance.now();
    const result = await postImage("/api/predict", blob);
    const received = performance.now();
    if (version !== state.version) return;   // cleared, or replaced, meanwhile
    state.source = { kind: "draw", blob };
    acceptResult(result);
    const done = performance.now();
    stats.latencies.push(done - started);
    stats.parts.push({ encode: sent - encoding, server: received - sent, draw: done - received });
    $("#status").textContent = "";
  } catch (error) {
    if (version === state.version) $("#status").textContent = error.message;
  } finally {
    inFlight = false;
    if (pending) requestUpdate(); else updateBusy();
  }
}

function renderDraw(result) {
  paintPicture($("#seen"), result.image, result.image_shape, 1);
  $("#prediction").textContent = result.class_names[result.prediction];
  renderProbabilities($("#probabilities"), result.probabilities, result.class_names,
                      result.prediction);
  renderLayers($("#layers"), result.layers,
               { clickable: true, names: result.class_names, best: result.prediction });
}

function renderProbabilities(container, probabilities, names, best) {
  container.replaceChildren(...probabilities.map((p, k) => {
    const row = document.createElement("div");
    row.className = "bar" + (k === best ? " best" : "");
    row.dataset.class = k;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = names[k];
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    track.appendChild(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${(100 * p).toFixed(1)} %`;
    row.append(name, track, value);
    return row;
  }));
}

function inspectable(name) {
  if (!state.model) return false;
  const layer = state.model.layers.find((l) => l.name === name);
  return Boolean(layer && layer.inspectable);
}

// The class names under a vector's bars: the last layer of a list, one value per class.

// ------------------------------------------------------------------ start
function describeInput(model) {
  const input = model.input;
  const [h, w] = input.shape;
  const dataset = DATASET_NAMES[model.dataset] || model.dataset;
  const thing = input.drawable ? `Draw ${input.thing}` : `Choose ${input.thing}`;
  $("#input-heading").textContent = dataset ? `${thing} (${dataset})` : thing;
  $("#tabs button[data-view='draw']").textContent = input.drawable ? "Draw" : "Choose";
  $("#seen-heading").textContent =
    `What the network sees (${h}\u00d7${w}, ${input.colour ? "colour" : "grey"})`;
  const seen = $("#seen");
  resize(seen, w, h);
  seen.style.height = `${Math.round(140 * h / w)}px`;
  $("#rule").textContent = `Pictures are prepared as the model's input: ${input.rule}.`;
  const offered = { draw: input.drawable, pick: model.browse, upload: true };
  document.querySelectorAll("#sources button").forEach((button) => {
    button.hidden = !offered[button.dataset.source];
  });
  showSource(input.drawable ? "draw" : (model.browse ? "pick" : "upload"));
  $("#status").textContent = inputChosenNote();
}

async function start() {
  clearDrawing();
  document.querySelectorAll("#tabs button").forEach((button) =>
    button.addEventListener("click", () => showView(button.dataset.view)));
  state.model = await getJSON("/api/model");
  const trained = state.model.dataset ? ` (trained on ${DATASET_NAMES[state.model.dataset] ||
    state.model.dataset})` : "";
  $("#checkpoint").textContent = state.model.checkpoint ?
    `checkpoint: ${state.model.checkpoint}${trained}` : "";
  describeInput(state.model);
  const choices = state.model.layers.filter((l) => l.inspectable);
  $("#inspect-layer").replaceChildren(...choices.map((l) => {
    const option = document.createElement("option");
    option.value = l.name;
    option.textContent = l.name;
    return option;
  }));
  state.inspectLayer = choices.length ? choices[0].name : null;
  if (!choices.length) {
    $("#inspect-choices").hidden = true;
    $("#inspect-map").hidden = true;
    $("#inspect-where").textContent = inspectNote();
  }
  fillChannels();
  setupLabels();
  watchTraining();
  document.body.dataset.ready = "true";
}

start();

// The page of `convnet serve`: the Inspect, Back-propagate, Browse and Watch views.
// Loaded after paint.js and before app.js, which holds the state and starts the page.
"use strict";

// ------------------------------------------------------------------ questions about the input
// A view's question about the current input (POST `path`): `ask(params, show)` sends one,
// and hands its answer to `show` unless a later question of the view, or another input, has
// come meanwhile; a failure is written in `messagePlace` unless a later question has come.
function questionAboutInput(path, messagePlace) {
  let latest = 0;
  return async function ask(params, show) {
    if (!state.source) {
      $(messagePlace).textContent = "choose an input in the Draw view first";
      return;
    }
    const asked = ++latest;
    const version = state.version;
    try {
      const answer = await postInput(path, state.source, params);
      if (asked !== latest || version !== state.version) return;
      show(answer);
    } catch (error) {
      if (asked === latest) $(messagePlace).textContent = error.message;
    }
  };
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
  canvas.style.height = `${Math.round(336 * h / w)}px`;
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

const askInspect = questionAboutInput("/api/inspect", "#inspect-where");

function runInspect(row, col) {
  return askInspect({ layer: state.inspectLayer, row, col, channel: state.inspectChannel },
                    showInspect);
}

function showInspect(answer) {
  state.inspect = answer;
  renderInspect(state.inspect);
  drawInspectMap();
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
    const suffix = channels > 1 ? `, channel ${c}` : "";
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
    const formula = answer.activation === "relu" ? "relu(z) = max(z, 0)" :
      `${answer.activation}(z)`;
    html += line(`${formula} =`, "inspect-activated", answer.activated);
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

const askBackprop = questionAboutInput("/api/backprop", "#backprop-loss");

function runBackprop() {
  return askBackprop({ label: state.label }, showBackprop);
}

function showBackprop(answer) {
  state.backprop = answer;
  const names = state.model.class_names;
  $("#backprop-loss").textContent = `true label ${names[answer.label]}, predicted ` +
    `${names[answer.prediction]} (p = ${answer.probabilities[answer.label].toFixed(4)} for ` +
    `the true label): cross-entropy loss ${answer.loss.toFixed(4)}`;
  if (answer.kernels) {
    renderLayers($("#kernel-gradients"), [answer.kernels, answer.kernel_gradient]);
  } else {
    const note = document.createElement("p");
    note.className = "note";
    note.textContent = "This network has no convolution, so it has no kernels to show.";
    $("#kernel-gradients").replaceChildren(note);
    delete $("#kernel-gradients").dataset.signature;
  }
  renderLayers($("#gradients"), answer.gradients.map((g) =>
    Object.assign({}, g, { name: "dL/d " + g.name })), { names });
}

// ------------------------------------------------------------------ Browse
let browseLoaded = false, browseAsked = 0, imagesAsked = 0;

async function loadBrowse() {
  browseLoaded = true;
  const split = $("#browse-split").value;
  const asked = ++browseAsked;
  imagesAsked += 1;   // images of the other split that are still coming are not shown
  $("#confusion").replaceChildren();
  $("#browse-images").replaceChildren();
  $("#browse-caption").textContent = "";
  $("#browse-summary").textContent = `computing the predictions on the ${SPLIT_NAMES[split]} ` +
    "split...";
  try {
    const summary = await getJSON("/api/browse?split=" + split);
    if (asked !== browseAsked) return;   // another split was chosen meanwhile
    $("#browse-summary").textContent = `${SPLIT_NAMES[summary.split]} split: ` +
      `${summary.count} images, accuracy ${(100 * summary.accuracy).toFixed(2)} %, ` +
      `${summary.mistakes} mistakes`;
    renderConfusion(summary);
  } catch (error) {
    if (asked === browseAsked) $("#browse-summary").textContent = error.message;
  }
}

function renderConfusion(summary) {
  const table = $("#confusion");
  const names = summary.class_names;
  const cell = (tag, text) => {
    const element = document.createElement(tag);
    element.textContent = text;
    return element;
  };
  const head = document.createElement("tr");
  const upright = names.every((n) => n.length <= 2);
  head.append(cell("th", "true \\ predicted"), ...names.map((n) => {
    const th = cell("th", n);
    if (!upright) th.className = "upwards";
    return th;
  }));
  const rows = summary.matrix.map((line, t) => {
    const tr = document.createElement("tr");
    tr.appendChild(cell("th", names[t]));
    line.forEach((count, p) => {
      const td = cell("td", String(count));
      td.dataset.true = t;
      td.dataset.predicted = p;
      td.className = (t === p ? "diag" : "wrong") + (count ? " some" : "");
      td.addEventListener("click", () => {
        table.querySelectorAll("td.selected").forEach((c) => c.classList.remove("selected"));
        td.classList.add("selected");
        showImages(`images?split=${summary.split}&true=${t}&predicted=${p}`,
                   `${SPLIT_NAMES[summary.split]}: true ${names[t]}, predicted ${names[p]}`);
      });
      tr.appendChild(td);
    });
    return tr;
  });
  table.replaceChildren(head, ...rows);
}

async function showImages(query, caption) {
  const names = state.model.class_names;
  const asked = ++imagesAsked;
  try {
    const answer = await getJSON("/api/browse/" + query);
    if (asked !== imagesAsked) return;   // another cell, or split, was chosen meanwhile
    $("#browse-caption").textContent = `${caption}: ${answer.total} images` +
      (answer.total > answer.images.length ? ` (the first ${answer.images.length} shown)` : "") +
      "; each titled prediction (truth).";
    $("#browse-images").replaceChildren(...answer.images.map((item) => {
      const box = thumbnail(item,
                            `${names[item.predicted]} (${names[item.label]}) #${item.index}`);
      if (item.label !== item.predicted) box.classList.add("wrong");
      box.title = `image ${item.index}: p = ${item.confidence}`;
      return box;
    }));
  } catch (error) {
    if (asked === imagesAsked) $("#browse-caption").textContent = error.message;
  }
}

$("#browse-split").addEventListener("change", loadBrowse);
$("#browse-mistakes").addEventListener("click", () => {
  const split = $("#browse-split").value;
  showImages("mistakes?split=" + split, `every mistake of the ${SPLIT_NAMES[split]} split`);
});

// ------------------------------------------------------------------ Watch training
// Every event of the stream is numbered by the server (`id`): a page that reconnects
// after a dropped stream sends the last number it received and gets the rest, and an
// event already drawn is never drawn twice. The stream ends with the run's last event,
// "finished" (final figures and files) or "stopped" (the reason); then the page stops
// listening. Read by the browser tests as window.convnet.watch (app.js).
const watch = { events: [], final: null, log: [], lastId: 0, lost: false, source: null };
const LOSS_COLOUR = "#2b6cb0", ACCURACY_COLOUR = "#dd6b20", FINAL_COLOUR = "#2f855a";
const AXIS_FONT = "12px system-ui, sans-serif";

// About `count` round tick values from `low` (a multiple of the step) to the first at or
// above `high`, so that the axis holds every value: steps of 1, 2 or 5 times a power of
// ten, and the decimals their labels need.
function niceTicks(low, high, count) {
  if (!(high > low)) high = low + 1;
  const raw = (high - low) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw * (1 - 1e-9));
  const ticks = [];
  for (let k = Math.floor(low / step + 1e-9); ; k++) {
    ticks.push(k * step);
    if (k * step >= high - step * 1e-9) break;
  }
  return { ticks, decimals: Math.max(0, -Math.floor(Math.log10(step) + 1e-9)) };
}

// One panel of the chart: axes with tick values, titles, a legend and the curves.
// panel: {top, height, title, yTitle, yMax, yTicks, format, series: [{label, colour,
// points: [[step, value]], dots}]}; x: {left, width, max, ticks, decimals}. The text
// drawn is also listed in `labels`, which the tests read.
function drawPanel(context, panel, x, labels) {
  const bottom = panel.top + panel.height;
  const xAt = (step) => x.left + x.width * step / x.max;
  const yAt = (value) => bottom - panel.height * Math.min(value, panel.yMax) / panel.yMax;
  context.font = AXIS_FONT;
  context.lineWidth = 1;
  // Grid and tick values.
  context.textAlign = "right";
  context.textBaseline = "middle";
  for (const value of panel.yTicks) {
    const y = Math.round(yAt(value)) + 0.5;
    context.strokeStyle = "#e2e2e2";
    context.beginPath(); context.moveTo(x.left, y); context.lineTo(x.left + x.width, y);
    context.stroke();
    context.fillStyle = "#333";
    const text = panel.format(value);
    context.fillText(text, x.left - 6, y);
    labels.push(text);
  }
  context.textAlign = "center";
  context.textBaseline = "top";
  for (const step of x.ticks) {
    const left = Math.round(xAt(step)) + 0.5;
    context.strokeStyle = "#333";
    context.beginPath(); context.moveTo(left, bottom); context.lineTo(left, bottom + 4);
    context.stroke();
    const text = step.toFixed(x.decimals);
    context.fillText(text, left, bottom + 6);
    labels.push(text);
  }
  // Axes.
  context.strokeStyle = "#333";
  context.beginPath();
  context.moveTo(x.left + 0.5, panel.top); context.lineTo(x.left + 0.5, bottom + 0.5);
  context.lineTo(x.left + x.width, bottom + 0.5);
  context.stroke();
  // Titles: the panel's above it, the y axis's written upwards beside it.
  context.textAlign = "left";
  context.textBaseline = "bottom";
  context.font = "bold " + AXIS_FONT;
  context.fillText(panel.title, x.left, panel.top - 6);
  labels.push(panel.title);
  context.font = AXIS_FONT;
  context.save();
  context.translate(14, panel.top + panel.height / 2);
  context.rotate(-Math.PI / 2);
  context.textAlign = "center";
  context.textBaseline = "middle";
  context.fillText(panel.yTitle, 0, 0);
  context.restore();
  labels.push(panel.yTitle);
  // Curves, then the legend at the top right.
  for (const series of panel.series) {
    context.strokeStyle = series.colour;
    context.fillStyle = series.colour;
    context.lineWidth = 2;
    context.beginPath();
    series.points.forEach(([step, value], k) => {
      if (k === 0) context.moveTo(xAt(step), yAt(value)); else context.lineTo(xAt(step), yAt(value));
    });
    if (!series.dots) context.stroke();
    for (const [step, value] of (series.dots || series.points.length === 1) ? series.points : []) {
      context.beginPath();
      context.arc(xAt(step), yAt(value), 4, 0, 2 * Math.PI);
      context.fill();
    }
  }
  context.lineWidth = 1;
  let right = x.left + x.width;
  context.textAlign = "right";
  context.textBaseline = "bottom";
  for (const series of panel.series.slice().reverse()) {
    if (!series.points.length && !series.always) continue;
    context.fillStyle = "#333";
    context.fillText(series.label, right, panel.top - 6);
    labels.push(series.label);
    const width = context.measureText(series.label).width;
    context.fillStyle = series.colour;
    context.fillRect(right - width - 22, panel.top - 13, 16, 3);
    right -= width + 34;
  }
}

function drawChart() {
  const canvas = $("#watch-chart");
  const context = canvas.getContext("2d");
  const width = canvas.width, height = canvas.height;
  context.clearRect(0, 0, width, height);
  context.fillStyle = "#fff";
  context.fillRect(0, 0, width, height);
  const events = watch.events;
  const final = watch.final && watch.final.event === "finished" ? watch.final : null;
  const lastStep = Math.max(1, ...events.map((e) => e.step), final ? final.step : 0);
  const xTicks = niceTicks(0, lastStep, 6);
  const x = { left: 64, width: width - 64 - 16, max: xTicks.ticks[xTicks.ticks.length - 1],
              ticks: xTicks.ticks, decimals: xTicks.decimals };
  const losses = events.filter((e) => e.loss !== null && e.loss !== undefined)
    .map((e) => [e.step, e.loss]);
  const lossTicks = niceTicks(0, Math.max(0, ...losses.map(([, v]) => v)) || 1, 4);
  const accuracies = events.filter((e) => e.accuracy !== null && e.accuracy !== undefined)
    .map((e) => [e.step, e.accuracy]);
  const labels = [];
  const panelHeight = (height - 30 - 42 - 56) / 2;
  drawPanel(context, {
    top: 30, height: panelHeight, title: "Loss", yTitle: "cross-entropy loss",
    yMax: lossTicks.ticks[lossTicks.ticks.length - 1], yTicks: lossTicks.ticks,
    format: (v) => v.toFixed(lossTicks.decimals),
    series: [{ label: "training loss (mean of the steps since the previous point)",
               colour: LOSS_COLOUR, points: losses, always: true }],
  }, x, labels);
  const series = [{ label: "accuracy on a validation slice", colour: ACCURACY_COLOUR,
                    points: accuracies, always: true }];
  if (final && final.valid_accuracy !== null) {
    series.push({ label: "final, whole validation split", colour: FINAL_COLOUR,
                  points: [[final.step, final.valid_accuracy]], dots: true });
  }
  drawPanel(context, {
    top: 30 + panelHeight + 42, height: panelHeight, title: "Accuracy", yTitle: "accuracy (%)",
    yMax: 1, yTicks: [0, 0.25, 0.5, 0.75, 1], format: (v) => `${Math.round(100 * v)}`,
    series,
  }, x, labels);
  context.fillStyle = "#333";
  context.font = AXIS_FONT;
  context.textAlign = "center";
  context.textBaseline = "bottom";
  const xTitle = "training step (counted over all epochs of this run)";
  context.fillText(xTitle, x.left + x.width / 2, height - 4);
  labels.push(xTitle);
  canvas.dataset.labels = labels.join("|");
  canvas.dataset.lossTicks = lossTicks.ticks.join("|");
  canvas.dataset.stepTicks = x.ticks.join("|");
}

function watchLog(line) {
  watch.log.push(line);
  const item = document.createElement("li");
  item.textContent = line;
  $("#watch-log").appendChild(item);
}

function percent(value) {
  return value === null ? "not measured" : `${(100 * value).toFixed(2)} %`;
}

function receiveFinal(event) {
  watch.final = event;
  let line;
  if (event.event === "finished") {
    line = `training finished after ${event.epochs} epoch${event.epochs === 1 ? "" : "s"} ` +
      `(${event.step} steps): validation accuracy ${percent(event.valid_accuracy)}, test ` +
      `accuracy ${percent(event.test_accuracy)}` +
      (event.checkpoint ? `; checkpoint ${event.checkpoint}, now served by this page` : "");
    if (event.checkpoint) $("#checkpoint").textContent = `checkpoint: ${event.checkpoint}`;
  } else {
    line = `training stopped after ${event.step} steps: ${event.reason}`;
  }
  $("#watch-status").textContent = line;
  watchLog(line);
  drawChart();
}

function watchTraining() {
  if (!state.model || !state.model.training) return;
  drawChart();
  const source = new EventSource("/api/train/events");
  watch.source = source;
  source.onopen = () => {
    if (watch.lost) watchLog("connection back: the stream goes on");
    watch.lost = false;
  };
  source.onerror = () => {
    // The browser reconnects by itself; say so once, not at every attempt.
    if (watch.final || watch.lost) return;
    watch.lost = true;
    watchLog("connection to the server lost (the server has stopped, or the network " +
             "dropped): trying again");
  };
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.event === "finished" || event.event === "stopped") {
      source.close();   // the run is over: nothing more will come
      if (!watch.final) receiveFinal(event);
      return;
    }
    const id = Number(message.lastEventId);
    if (id && id <= watch.lastId) return;   // already drawn
    if (id) watch.lastId = id;
    watch.events.push(event);
    const accuracy = event.accuracy === null ? "" :
      `, validation-slice accuracy ${(100 * event.accuracy).toFixed(1)} %`;
    $("#watch-status").textContent = `epoch ${event.epoch}, step ${event.step}: loss ` +
      `${event.loss === null ? "not a finite number" : event.loss.toFixed(4)}${accuracy}`;
    drawChart();
    renderWatchedKernels(event);
  };
}

// The first layer's kernels of a training event: one list of kh * kw * c_in weights
// (channel last) per kernel, drawn as maps (one input channel) or colour patches (three);
// none for a network without convolution.
function renderWatchedKernels(event) {
  const container = $("#watch-filters");
  const kernels = event.kernels || [];
  if (!kernels.length) {
    const note = document.createElement("p");
    note.className = "note";
    note.textContent = "This network has no convolution, so it has no filters to show.";
    container.replaceChildren(note);
    delete container.dataset.signature;
    return;
  }
  let min = 0, max = 0;
  for (const kernel of kernels) {
    for (const v of kernel) { min = Math.min(min, v); max = Math.max(max, v); }
  }
  const [kh, kw, channels] = event.kernel_shape;
  let layer = { name: "conv1 kernels", kind: "maps", shape: [kh, kw, kernels.length], min, max,
                values: kernels };
  if (channels === 3) {
    // As the server draws colour kernels: 0.5 + w / (2 * largest |w|), so grey is 0.
    const limit = Math.max(-min, max) || 1;
    layer = { name: "conv1 kernels", kind: "colours", shape: [kh, kw, 3, kernels.length],
              min: -limit, max: limit, values: kernels.map((kernel) =>
                Uint8ClampedArray.from(kernel, (v) => Math.round(255 * (0.5 + v / (2 * limit))))) };
  }
  renderLayers(container, [layer]);
}

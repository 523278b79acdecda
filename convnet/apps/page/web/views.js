// The page of `convnet serve`: the Inspect, Back-propagate, Browse and Watch views.
// Loaded after paint.js and before app.js, which holds the state and starts the page.
"use strict";

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

let inspectAsked = 0;

async function runInspect(row, col) {
  if (!state.source) {
    $("#inspect-where").textContent = "choose an input in the Draw view first";
    return;
  }
  const asked = ++inspectAsked;
  const version = state.version;
  try {
    const answer = await postInput("/api/inspect", state.source,
                                   { layer: state.inspectLayer, row, col,
                                     channel: state.inspectChannel });
    // A later click, or another input, has come meanwhile.
    if (asked !== inspectAsked || version !== state.version) return;
    state.inspect = answer;
    renderInspect(state.inspect);
    drawInspectMap();
  } catch (error) {
    if (asked === inspectAsked) $("#inspect-where").textContent = error.message;
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

let backpropAsked = 0;

async function runBackprop() {
  if (!state.source) {
    $("#backprop-loss").textContent = "choose an input in the Draw view first";
    return;
  }
  const asked = ++backpropAsked;
  const version = state.version;
  try {
    const answer = await postInput("/api/backprop", state.source, { label: state.label });
    // Another label, or another input, was chosen meanwhile.
    if (asked !== backpropAsked || version !== state.version) return;
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
  } catch (error) {
    if (asked === backpropAsked) $("#backprop-loss").textContent = error.message;
  }
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
  const maxLoss = Math.max(...watched.map((e) => e.loss ?? 0)) || 1;
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

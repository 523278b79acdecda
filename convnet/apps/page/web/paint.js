// The page of `convnet serve`: pictures and bars of the arrays the server sends (layer
// outputs, gradients, kernels, images). Loaded first: the other scripts use its names.
"use strict";

const $ = (selector) => document.querySelector(selector);

// Bars: the colours of the maps' legend (red above zero, blue below when values are
// signed; grey when none is negative).
const RED = "#d65f5f", BLUE = "#6b8fd6", GREY = "#777";

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

function resize(canvas, width, height) {
  if (canvas.width !== width) canvas.width = width;
  if (canvas.height !== height) canvas.height = height;
}

function paint(canvas, values, width, height, scale) {
  resize(canvas, width, height);
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

// Colour pictures: `rgb` holds width * height * 3 values, channel last, each in
// [0, top] (1 for the network's input, 255 for bytes).
function paintColour(canvas, rgb, width, height, top) {
  resize(canvas, width, height);
  const context = canvas.getContext("2d");
  const image = context.createImageData(width, height);
  const scale = 255 / top;
  for (let i = 0; i < width * height; i++) {
    for (let k = 0; k < 3; k++) {
      image.data[4 * i + k] = Math.round(Math.max(0, Math.min(top, rgb[3 * i + k])) * scale);
    }
    image.data[4 * i + 3] = 255;
  }
  context.putImageData(image, 0, 0);
}

// An image as the network takes it: grey ones dark on light, colour ones as they are.
function paintPicture(canvas, values, shape, top) {
  const [h, w, c] = shape;
  if (c === 3) paintColour(canvas, values, w, h, top);
  else paint(canvas, values, w, h, colourScale(0, top));
}

function decodeBytes(codes) {
  const text = atob(codes);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

function blank(canvas) {
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
}

// Class labels under bars need this many pixels each.
const measure = document.createElement("canvas").getContext("2d");
const LABEL_FONT = "11px system-ui, sans-serif";

function labelWidth(labels) {
  measure.font = LABEL_FONT;
  return Math.max(...labels.map((label) => measure.measureText(label).width));
}

function sizeBars(canvas, count, labels) {
  if (labels) {
    const step = Math.max(24, Math.ceil(labelWidth(labels)) + 10);
    resize(canvas, step * count, 66);
  } else {
    resize(canvas, Math.min(720, Math.max(200, 6 * count)), 50);
  }
}

// Bars of a vector in the legend's colours; `labels` (class names) are written under
// them, and the bar `best` (or none, -1) is outlined.
function bars(canvas, values, min, max, labels, best) {
  const context = canvas.getContext("2d");
  const width = canvas.width;
  const height = canvas.height - (labels ? 16 : 0);
  context.clearRect(0, 0, canvas.width, canvas.height);
  const low = Math.min(0, min), high = Math.max(0, max);
  const span = (high - low) || 1;
  const zero = Math.round(height * high / span);
  const step = width / values.length;
  const gap = step > 3 ? 1 : 0;
  values.forEach((v, i) => {
    // Whole pixels, and at least one for any value but 0: a bar always shows its colour.
    const left = Math.round(i * step);
    const right = Math.max(Math.round((i + 1) * step) - gap, left + 1);
    const extent = v === 0 ? 0 : Math.max(1, Math.round(height * Math.abs(v) / span));
    const top = v >= 0 ? zero - extent : zero + 1;
    context.fillStyle = min < 0 ? (v < 0 ? BLUE : RED) : GREY;
    context.fillRect(left, top, right - left, extent);
    if (i === best) {
      context.strokeStyle = "#000";
      context.lineWidth = 2;
      context.strokeRect(left + 1, top - 1, Math.max(right - left - 2, 1), extent + 2);
    }
  });
  context.fillStyle = "#000";
  context.fillRect(0, zero, width, 1);
  if (labels) {
    context.font = LABEL_FONT;
    context.textAlign = "center";
    context.textBaseline = "top";
    labels.forEach((label, i) => {
      context.font = (i === best ? "bold " : "") + LABEL_FONT;
      context.fillText(label, (i + 0.5) * step, height + 3);
    });
  }
}

// The server sends the values it only draws as bytes: code k stands for
// min + k * (max - min) / 255, channels first. Decode them into layer.values:
// one array of h * w values per channel, one array for a vector, or for colour
// kernels ("colours") one array of kh * kw * 3 bytes per kernel, drawn as they are.
function decodeLayer(layer) {
  if (layer.values) return layer;
  const bytes = decodeBytes(layer.codes);
  if (layer.kind === "colours") {
    const [kh, kw, , count] = layer.shape;
    const size = kh * kw * 3;
    layer.values = Array.from({ length: count }, (_, k) => bytes.subarray(k * size, (k + 1) * size));
    return layer;
  }
  const span = layer.max - layer.min;
  const values = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) values[i] = layer.min + bytes[i] * span / 255;
  if (layer.kind === "maps") {
    const [h, w, c] = layer.shape;
    layer.values = Array.from({ length: c }, (_, k) => values.subarray(k * h * w, (k + 1) * h * w));
  } else {
    layer.values = Array.from(values);
    if (layer.signs) keepSigns(layer.values, decodeBytes(layer.signs), span / 510);
  }
  return layer;
}

// A bar's colour and direction are its value's sign, which the 256 levels of the codes
// lose within half a level of zero: the server sends each sign too (0 below zero, 1 for
// zero, 2 above). A zero is drawn as no bar; a value decoded across zero lies within
// `half` of it, and is drawn as that much on its own side.
function keepSigns(values, signs, half) {
  for (let i = 0; i < values.length; i++) {
    const sign = signs[i] - 1;
    if (sign === 0) values[i] = 0;
    else if (Math.sign(values[i]) !== sign) values[i] = sign * half;
  }
}

function fmt(value) {
  return Number(value).toFixed(4);
}

function thumbnail(item, caption) {
  const box = document.createElement("div");
  box.className = "thumb";
  const canvas = document.createElement("canvas");
  paintPicture(canvas, decodeBytes(item.codes), item.shape, 255);
  box.appendChild(canvas);
  box.append(caption);
  return box;
}

function vectorLabels(layer, index, layers, options) {
  const names = options.names;
  if (!names || index !== layers.length - 1) return null;
  if (layer.shape[0] === names.length) return names;
  return layer.shape[0] === 1 && names.length === 2 ? [`${names[1]} (logit)`] : null;
}

function vectorBest(layer, labels, options) {
  if (!labels || options.best === undefined || labels.length !== layer.values.length) return -1;
  return options.best;
}

// Draw every layer: (h, w, c) outputs as one picture per channel, vectors as bars,
// colour kernels as colour patches. options: clickable (maps open Inspect), names (class
// names under the last vector), best (the class outlined there).
function renderLayers(container, layers, options) {
  options = options || {};
  layers.forEach(decodeLayer);
  // While drawing, the layers keep their shapes: repaint the pictures in place
  // instead of building the page's elements again on every update.
  const signature = layers.map((l) => l.name + ":" + l.kind + ":" + l.shape.join("x")).join(",");
  if (container.dataset.signature === signature) {
    layers.forEach((layer, index) =>
      repaintLayer(container.children[index], layer, index, layers, options));
    return;
  }
  container.dataset.signature = signature;
  const rows = layers.map((layer, index) => {
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
      const zoom = Math.max(1, Math.round(52 / h));
      const scale = colourScale(layer.min, layer.max);
      layer.values.forEach((values, channel) => {
        const canvas = document.createElement("canvas");
        paint(canvas, values, w, h, scale);
        canvas.style.width = `${w * zoom}px`;
        canvas.style.height = `${h * zoom}px`;
        canvas.dataset.layer = layer.name;
        canvas.dataset.channel = channel;
        canvas.title = `${layer.name} channel ${channel}`;
        if (options.clickable && inspectable(layer.name)) {
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
    } else if (layer.kind === "colours") {
      const [kh, kw] = layer.shape;
      const zoom = Math.max(1, Math.round(40 / kh));
      layer.values.forEach((values, channel) => {
        const canvas = document.createElement("canvas");
        paintColour(canvas, values, kw, kh, 255);
        canvas.style.width = `${kw * zoom}px`;
        canvas.style.height = `${kh * zoom}px`;
        canvas.dataset.layer = layer.name;
        canvas.dataset.channel = channel;
        canvas.title = `${layer.name} kernel ${channel} (grey = 0)`;
        maps.appendChild(canvas);
      });
    } else {
      const canvas = document.createElement("canvas");
      canvas.className = "strip";
      canvas.dataset.layer = layer.name;
      const labels = vectorLabels(layer, index, layers, options);
      if (labels) canvas.dataset.labels = labels.join("|");
      sizeBars(canvas, layer.values.length, labels);
      bars(canvas, layer.values, layer.min, layer.max, labels, vectorBest(layer, labels, options));
      maps.appendChild(canvas);
    }
    row.appendChild(maps);
    return row;
  });
  container.replaceChildren(...rows);
}

// A layer's extremes: four decimals, or three significant digits for the tiny values of
// a gradient when the loss is nearly 0.
function extreme(value) {
  return value === 0 || Math.abs(value) >= 1e-3 ? fmt(value) : Number(value).toExponential(2);
}

function layerTitle(layer) {
  if (layer.kind === "colours") {
    const [kh, kw, c, count] = layer.shape;
    return `${layer.name}: ${count} kernels ${kh}\u00d7${kw}\u00d7${c} as colours ` +
      `(grey = 0; min ${extreme(layer.min)}, max ${extreme(layer.max)})`;
  }
  return `${layer.name}: ${layer.shape.join("\u00d7")}` +
    `  (min ${extreme(layer.min)}, max ${extreme(layer.max)})`;
}

function repaintLayer(row, layer, index, layers, options) {
  row.querySelector(".title").textContent = layerTitle(layer);
  const canvases = row.querySelectorAll("canvas");
  if (layer.kind === "maps") {
    const [h, w] = layer.shape;
    const scale = colourScale(layer.min, layer.max);
    layer.values.forEach((values, channel) => paint(canvases[channel], values, w, h, scale));
  } else if (layer.kind === "colours") {
    const [kh, kw] = layer.shape;
    layer.values.forEach((values, k) => paintColour(canvases[k], values, kw, kh, 255));
  } else {
    const labels = vectorLabels(layer, index, layers, options);
    bars(canvases[0], layer.values, layer.min, layer.max, labels,
         vectorBest(layer, labels, options));
  }
}

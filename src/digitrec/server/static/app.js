// The draw-a-digit page: strokes on a canvas, read by POST /api/predict while drawing (debounced).
"use strict";

const canvas = document.getElementById("canvas");
const context = canvas.getContext("2d");
const digitOut = document.getElementById("digit");
const seen = document.getElementById("seen");
const status = document.getElementById("status");
const bars = document.getElementById("bars");
const SIZE = 280;
const DEBOUNCE_MS = 150;

let strokes = [];        // each stroke: a list of [x, y] in canvas pixels
let upload = null;       // the image last uploaded, dropped or pasted, while it is what the canvas shows
let current = null;
let timer = null;
let sequence = 0;        // answers to older requests are dropped
let reading = 0;         // reads on their way: the result is aria-busy meanwhile, so that a screen reader waits for the answer
const resultSection = document.querySelector(".result");

for (let d = 0; d < 10; d++) {
  const row = document.createElement("li");
  row.innerHTML = `<span>${d}</span><span class="bar"><span class="fill"></span></span><span class="pct">–</span>`;
  bars.appendChild(row);
}

function numberMode() {
  return document.querySelector('input[name="mode"]:checked').value === "number";
}

// MNIST's pen is about a tenth of the digit's height: keep that ratio at any canvas size.
function penWidth() {
  return canvas.height / 12;
}

function redraw() {
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.strokeStyle = "#000";
  context.fillStyle = "#000";
  context.lineWidth = penWidth();
  context.lineCap = "round";
  context.lineJoin = "round";
  for (const stroke of strokes) {
    if (stroke.length === 1) {
      context.beginPath();
      context.arc(stroke[0][0], stroke[0][1], penWidth() / 2, 0, 2 * Math.PI);
      context.fill();
      continue;
    }
    context.beginPath();
    context.moveTo(stroke[0][0], stroke[0][1]);
    for (const [x, y] of stroke.slice(1)) context.lineTo(x, y);
    context.stroke();
  }
}

function point(event) {
  const box = canvas.getBoundingClientRect();
  return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
}

canvas.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  current = [point(event)];
  strokes.push(current);
  upload = null;  // the first stroke draws over an upload: the canvas holds strokes alone from now on
  redraw();
});
canvas.addEventListener("pointermove", (event) => {
  if (!current) return;
  event.preventDefault();
  current.push(point(event));
  redraw();
  schedule();
});
function endStroke() {
  if (!current) return;
  current = null;
  schedule(0);
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

function schedule(delay = DEBOUNCE_MS) {
  clearTimeout(timer);
  timer = setTimeout(readCanvas, delay);
}

function clearAll() {
  strokes = [];
  upload = null;
  redraw();
  showEmpty("Draw a digit to see it read.");
}

function undo() {
  strokes.pop();
  redraw();
  if (strokes.length) schedule(0); else showEmpty("Draw a digit to see it read.");
}

document.getElementById("clear").addEventListener("click", clearAll);
document.getElementById("undo").addEventListener("click", undo);
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
    event.preventDefault();
    undo();
  }
});
for (const radio of document.querySelectorAll('input[name="mode"]')) {
  radio.addEventListener("change", () => {
    const oldWidth = canvas.width;
    canvas.width = numberMode() ? 2 * SIZE : SIZE;
    canvas.classList.toggle("wide", numberMode());
    canvas.setAttribute("aria-label", numberMode() ? "drawing area: write a number, digit by digit from left to right"
                                                    : "drawing area: draw a digit with the mouse, a finger or a pen");
    keepDrawing(oldWidth);
  });
}

// A mode switch keeps what is on the canvas: strokes that no longer fit are scaled down into it (about its middle row),
// an upload is drawn again; either is read again in the new mode.
function keepDrawing(oldWidth) {
  if (upload) {
    showUpload(upload.image);
    send(upload.file, upload.file.type || "application/octet-stream");
    return;
  }
  const widest = Math.max(0, ...strokes.flat().map(([x]) => x));
  if (widest > canvas.width) {
    const scale = canvas.width / oldWidth, lift = canvas.height * (1 - scale) / 2;
    strokes = strokes.map((stroke) => stroke.map(([x, y]) => [x * scale, y * scale + lift]));
  }
  redraw();
  if (strokes.length) schedule(0); else showEmpty("Draw a digit to see it read.");
}

function showEmpty(message) {
  clearTimeout(timer);
  sequence++;
  digitOut.textContent = "?";
  digitOut.classList.remove("unsure");
  showSeen([]);
  status.textContent = message;
  status.classList.remove("unsure");
  showBars(null);
}

// A probability as a person reads it: never rounded up to certainty (0.99985 is "> 99.9%", not "100.0%").
function percent(p) {
  return p >= 0.9995 ? "> 99.9%" : `${(100 * p).toFixed(1)}%`;
}

function showBars(probabilities) {
  const top = probabilities ? probabilities.indexOf(Math.max(...probabilities)) : -1;
  bars.querySelectorAll("li").forEach((row, d) => {
    const p = probabilities ? probabilities[d] : 0;
    row.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
    row.querySelector(".pct").textContent = probabilities ? percent(p) : "–";
    row.classList.toggle("top", d === top);
  });
}

function show(result) {
  const unsure = result.uncertain;
  const number = result.number !== undefined;
  const answer = number ? (result.number || "?") : (result.digit === null ? "?" : String(result.digit));
  digitOut.textContent = answer;
  digitOut.classList.toggle("unsure", unsure);
  showSeen(result.preprocessed || []);
  showBars(number ? (result.digits.length === 1 ? result.digits[0].probabilities : null) : (result.probabilities.length ? result.probabilities : null));
  const confidence = percent(result.confidence);
  if (number) {
    status.textContent = unsure ? `Not sure: this may read ${answer} (${result.reason}).` : `The number ${answer}, ${confidence} sure.`;
  } else if (result.digit === null) {
    status.textContent = `No digit: ${result.reason}.`;
  } else {
    status.textContent = unsure ? `Not sure: ${result.reason}. Maybe a ${answer}.` : `A ${answer}, ${confidence} sure.`;
  }
  status.classList.toggle("unsure", unsure);
}

// The 28x28 image(s) the model was shown: one per digit of a number.
function showSeen(urls) {
  seen.replaceChildren(...urls.map((url) => {
    const image = new Image(84, 84);
    image.alt = "";
    image.src = url;
    return image;
  }));
}

// `mine` is taken when the read starts, before the canvas is encoded, so that a clear or undo
// in the meantime makes this answer stale.
// `body` may be a promise of it (a canvas being encoded).
async function send(body, type, mine = ++sequence) {
  const url = `/api/predict?preprocessed=true${numberMode() ? "&multi=true" : ""}`;
  busy(+1);
  try {
    const response = await fetch(url, { method: "POST", headers: { "Content-Type": type }, body: await body });
    const result = await response.json();
    if (mine !== sequence) return;
    if (!response.ok) {
      showEmpty(`Could not read that: ${result.error}`);
      return;
    }
    show(result);
  } catch (error) {
    if (mine === sequence) showEmpty(`The server did not answer (${error.message}).`);
  } finally {
    busy(-1);
  }
}

function busy(change) {
  reading += change;
  resultSection.setAttribute("aria-busy", String(reading > 0));
}

function readCanvas() {
  if (!strokes.length) return;
  const mine = ++sequence;
  send(new Promise((resolve) => canvas.toBlob(resolve, "image/png")), "image/png", mine);
}

// The upload on the canvas, scaled to fit.
function showUpload(image) {
  redraw();
  const scale = Math.min(canvas.width / image.width, canvas.height / image.height);
  const w = image.width * scale, h = image.height * scale;
  context.drawImage(image, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
}

function readFile(file) {
  if (!file) return;
  strokes = [];
  upload = null;
  const url = URL.createObjectURL(file);
  const image = new Image();
  image.onload = () => {
    upload = { file, image };
    showUpload(image);
    URL.revokeObjectURL(url);
  };
  image.onerror = () => URL.revokeObjectURL(url);
  image.src = url;
  send(file, file.type || "application/octet-stream");
}

document.getElementById("file").addEventListener("change", (event) => readFile(event.target.files[0]));
const pad = document.querySelector(".pad");
pad.addEventListener("dragover", (event) => { event.preventDefault(); pad.classList.add("dragging"); });
pad.addEventListener("dragleave", () => pad.classList.remove("dragging"));
pad.addEventListener("drop", (event) => {
  event.preventDefault();
  pad.classList.remove("dragging");
  readFile(event.dataTransfer.files[0]);
});
document.addEventListener("paste", (event) => {
  const item = [...event.clipboardData.items].find((entry) => entry.type.startsWith("image/"));
  if (item) readFile(item.getAsFile());
});

fetch("/api/model").then((response) => response.json()).then((model) => {
  const accuracy = model.test_accuracy ? ` · ${(100 * model.test_accuracy).toFixed(2)}% on MNIST's test set` : "";
  document.getElementById("model").textContent = `Model: ${model.name} · ${model.architecture}${accuracy}`;
}).catch(() => { document.getElementById("model").textContent = "Model: unknown"; });

redraw();

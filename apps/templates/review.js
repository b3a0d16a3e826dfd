// The page's data arrive as JSON (a data block, never run as script); every string from data is put on the page
// as text: `textContent`, or `esc` inside the HTML the lists are built from.
const PAGE = JSON.parse(document.getElementById("page-data").textContent);
const TASKS = PAGE.tasks;
const ME = PAGE.reviewer;
const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const esc = (value) => String(value).replace(/[&<>"']/g, (ch) => ESCAPES[ch]);
const COLOURS = { SUCCESS: "#16a34a", AWAITING_REVIEW: "#f59e0b", REJECTED: "#dc2626" };
const state = { queue: [], index: 0, boxes: [], selected: -1, picked: false, image: null, drag: null,
                view: null, undo: [], filtered: false, concepts: [], conceptSelected: -1, pane: "boxes",
                hiddenConcepts: new Set(), hiddenIds: new Set(), polygonMode: false, draft: [] };
const $ = (id) => document.getElementById(id);
const task = () => $("task").value;
const plural = (n, one, many) => `${n} ${n === 1 ? one : (many || one + "s")}`;
function say(text) { $("message").textContent = text || ""; }

// Every request says when it waits: a pipeline run may hold the database for a while.
async function api(method, url, body) {
  const slow = setTimeout(() => { $("waiting").textContent = method === "GET" ? "Loading ..." :
    "Saving ... the database is busy (a pipeline run may hold it); your decision waits and is not lost."; }, 800);
  try {
    const response = await fetch(url, { method, headers: { "Content-Type": "application/json" },
                                        body: body ? JSON.stringify(body) : undefined });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = typeof data.detail === "string" ? data.detail
        : Array.isArray(data.detail) ? data.detail.map((d) => d.msg).join("; ") : `the server answered ${response.status}`;
      throw new Error(detail);
    }
    return data;
  } finally { clearTimeout(slow); $("waiting").textContent = ""; }
}

// Up to 20 concepts have a key: 1-9 and 0 the first ten, shift with them the next ten.
const DIGITS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"];
const HOTKEYS = [...DIGITS, ...DIGITS.map((d) => "shift+" + d)];
function fillConceptPickers() {
  const t = TASKS.find((x) => x.name === task()), wanted = $("concept-search").value.trim().toLowerCase();
  const found = t.concepts.map((c, i) => [c, i]).filter(([c]) => c.toLowerCase().includes(wanted));
  $("relabel").innerHTML = found.map(([c, i]) => `<option value="${esc(c)}">${HOTKEYS[i] ? esc(HOTKEYS[i]) + " " : ""
    }${esc(c)}</option>`).join("");
  $("new-concept").innerHTML = found.map(([c]) => `<option>${esc(c)}</option>`).join("");
  $("concept-eyes").innerHTML = found.map(([c]) => `<label><input type="checkbox" class="eye" data-concept="${
    esc(c)}" ${state.hiddenConcepts.has(c) ? "" : "checked"}> ${esc(c)}</label>`).join("");
  $("hotkeys").innerHTML = "Keys: " + t.concepts.slice(0, HOTKEYS.length).map((c, i) =>
    `<kbd>${esc(HOTKEYS[i])}</kbd> ${esc(c)}`).join(" · ");
}

function fillTask() {
  const t = TASKS.find((x) => x.name === task());
  const concepts = t.concepts.map((c) => `<option>${esc(c)}</option>`).join("");
  state.hiddenConcepts = new Set(); state.hiddenIds = new Set();
  fillConceptPickers();
  $("f-concept").innerHTML = '<option value="">any</option>' + concepts;
  $("add-concept").innerHTML = t.image_concepts.map((c) => `<option>${esc(c)}</option>`).join("");
  $("classifications").hidden = !t.image_concepts.length;
  $("objects").hidden = !t.detects;
}

function banner(text) { $("banner").textContent = text || ""; $("banner").style.display = text ? "block" : "none"; }

let latestLoad = 0;  // answers to an older request are dropped
async function loadQueue(showId) {
  const load = ++latestLoad;
  const params = new URLSearchParams({ task: task(), combine: $("f-combine").value });
  if ($("f-status").value) params.append("status", $("f-status").value);
  if ($("f-concept").value) params.append("concept", $("f-concept").value);
  if ($("f-labeler").value) params.append("labeler", $("f-labeler").value);
  state.filtered = [...params.keys()].some((k) => k !== "task" && k !== "combine");
  const data = await api("GET", "/api/queue?" + params);
  if (load !== latestLoad) return;
  state.queue = data.items;
  const again = showId ? state.queue.findIndex((item) => item.input_id === showId) : -1;
  state.index = again >= 0 ? again : Math.min(state.index, Math.max(state.queue.length - 1, 0));
  // A consensus task's adjudicator is counted under "NAME (adjudicator)".
  const mine = data.progress[ME] || data.progress[`${ME} (adjudicator)`] || { assigned: 0, reviewed: 0 };
  $("progress").textContent = mine.assigned
    ? `Your queue: ${mine.reviewed} / ${plural(mine.assigned, "image")} reviewed` : "Your queue is empty";
  renderQueue();
  if (!state.queue.length) {
    state.boxes = []; state.concepts = []; state.image = null; state.selected = -1; draw(); renderBoxes();
    $("image-name").textContent = "";
    banner(state.filtered ? "No images match these filters. Change or clear a filter to see more."
                          : `Nothing to review: task ${task()} holds no images for ${ME}.`);
    return;
  }
  const left = state.queue.filter((item) => item.pending > 0).length;
  banner(left || state.filtered ? "" : `All done: every image in your queue of ${task()} is reviewed.`);
  await loadImage(load);
}

function renderQueue() {
  const total = state.queue.length;
  $("queue-head").textContent = total ? `${state.index + 1} / ${total} ${total === 1 ? "image" : "images"}` : "0 images";
  $("queue-items").innerHTML = state.queue.map((item, i) => `<div data-i="${i}" data-input="${esc(item.input_id)}"
    class="item ${i === state.index ? "current" : ""} ${item.pending ? "" : "finished"}">${esc(item.file || item.input_id.slice(0, 12))}<br>
    <small>${item.pending ? plural(item.pending, "item") + " to review" : "reviewed"} &middot;
    ${plural(item.boxes, "box", "boxes")}${item.concepts ? " &middot; " + plural(item.concepts, "concept") : ""}</small></div>`).join("");
}

// A box waits for this reviewer when it is in the review band, or is an auto-accepted box drawn as a spot check
// that no person has decided yet.
const undecided = (b) => b.status === "AWAITING_REVIEW" || b.spot_check_pending;
// The suggestions slider hides boxes still awaiting review whose probability is below it; decided boxes and
// people's boxes (no probability) always show.
const shownBox = (b) => !(b.status === "AWAITING_REVIEW" && b.confidence != null &&
                          b.confidence < Number($("box-min").value));
const shownBoxes = () => state.boxes.map((b, i) => [b, i]).filter(([b]) => shownBox(b)).map(([, i]) => i);
// The eye boxes hide a concept, or one object, on the image (the list keeps them, greyed).
const visible = (b) => !state.hiddenConcepts.has(b.concept) && !state.hiddenIds.has(b.annotation_id);
const hasPolygon = (b) => Array.isArray(b.polygon) && b.polygon.length >= 6;
const vertices = (b) => b.polygon.reduce((points, v, i) => (i % 2 ? points[points.length - 1].push(v)
                                                                 : points.push([v]), points), []);

async function loadImage(load) {
  const item = state.queue[state.index];
  const data = await api("GET", `/api/inputs/${item.input_id}?task=${encodeURIComponent(task())}`);
  if (load !== latestLoad) return;
  state.boxes = data.annotations.filter((a) => a.kind !== "concept");
  state.concepts = data.annotations.filter((a) => a.kind === "concept");
  // A pick by hand stays; otherwise the first undecided box is selected, or the first undecided concept when no
  // box waits.
  const kept = (pane, list, i) => state.picked && state.pane === pane && !!list[i];
  const keepBox = kept("boxes", state.boxes, state.selected);
  const keepConcept = kept("concepts", state.concepts, state.conceptSelected);
  if (!keepBox) state.selected = state.boxes.findIndex((b) => undecided(b) && shownBox(b));
  if (!keepConcept) state.conceptSelected = state.concepts.findIndex(undecided);
  if (!keepBox && !keepConcept) {
    state.picked = false;
    state.pane = !state.boxes.some(undecided) && state.conceptSelected >= 0 ? "concepts" : "boxes";
  }
  if (!state.image || state.image.dataset.id !== item.input_id) {
    const image = new Image(); image.dataset.id = item.input_id;
    await new Promise((ok, fail) => { image.onload = ok; image.onerror = () => fail(new Error(
      `The image ${item.file || item.input_id} could not be loaded.`)); image.src = `/images/${item.input_id}`; });
    if (load !== latestLoad) return;
    state.image = image; state.view = null;
  }
  $("image-name").textContent = `${item.file || item.input_id} (${state.image.width} x ${state.image.height})`;
  draw(); renderBoxes(); renderConcepts();
  $("canvas").dataset.input = item.input_id;  // which image the boxes on the page belong to
}

// The image fills the stage (fit), zoomed and panned by `view`: screen = offset + image pixel * scale.
function fitView() {
  const canvas = $("canvas"), W = canvas.clientWidth, H = canvas.clientHeight;
  const scale = Math.min(W / state.image.width, H / state.image.height);
  return { scale, ox: (W - state.image.width * scale) / 2, oy: (H - state.image.height * scale) / 2 };
}
const toScreen = (x, y) => [state.view.ox + x * state.image.width * state.view.scale,
                            state.view.oy + y * state.image.height * state.view.scale];

function draw() {
  const canvas = $("canvas"), ratio = window.devicePixelRatio || 1;
  canvas.width = canvas.clientWidth * ratio; canvas.height = canvas.clientHeight * ratio;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, canvas.clientWidth, canvas.clientHeight);
  if (!state.image || !state.queue.length) { canvas.dataset.drawn = ""; return; }
  state.view = state.view || fitView();
  const { scale, ox, oy } = state.view, w = state.image.width * scale, h = state.image.height * scale;
  ctx.drawImage(state.image, ox, oy, w, h);
  canvas.dataset.drawn = [ox, oy, w, h].map((v) => v.toFixed(1)).join(",");
  ctx.font = "bold 14px system-ui, sans-serif";
  state.boxes.forEach((b, i) => {
    if (!shownBox(b) || !visible(b)) return;
    const [x1, y1] = toScreen(b.x1, b.y1), [x2, y2] = toScreen(b.x2, b.y2), colour = COLOURS[b.status] || "#6b7280";
    ctx.strokeStyle = colour; ctx.lineWidth = i === state.selected ? 4 : 2;
    if (hasPolygon(b)) {  // a segmentation: its outline, lightly filled, and its vertices when selected
      const points = vertices(b).map(([x, y]) => toScreen(x, y));
      ctx.beginPath(); points.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y))); ctx.closePath();
      ctx.globalAlpha = 0.15; ctx.fillStyle = colour; ctx.fill(); ctx.globalAlpha = 1; ctx.stroke();
      if (i === state.selected) {
        ctx.fillStyle = "#fff";
        points.forEach(([x, y]) => { ctx.fillRect(x - 4, y - 4, 8, 8); ctx.strokeRect(x - 4, y - 4, 8, 8); });
      }
    } else {
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    }
    // The label sits on its own filled strip, so it reads on any background.
    const label = `${b.concept}${b.original_concept ? " (was " + b.original_concept + ")" : ""}${
      b.confidence == null ? "" : " " + b.confidence.toFixed(2)}`;
    const width = ctx.measureText(label).width + 8, top = y1 >= 20 ? y1 - 20 : y1;
    ctx.fillStyle = colour; ctx.fillRect(x1, top, width, 20);
    ctx.fillStyle = "#fff"; ctx.fillText(label, x1 + 4, top + 15);
  });
  if (state.draft.length) {  // the polygon being drawn, live
    const points = state.draft.map(([x, y]) => toScreen(x, y));
    ctx.setLineDash([6, 4]); ctx.strokeStyle = "#38bdf8"; ctx.lineWidth = 2; ctx.beginPath();
    points.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y))); ctx.stroke(); ctx.setLineDash([]);
    ctx.fillStyle = "#38bdf8"; points.forEach(([x, y]) => ctx.fillRect(x - 3, y - 3, 6, 6));
  }
  if (state.drag && state.drag.kind === "new" && state.drag.to) {  // the box being drawn, live
    const [x1, y1] = toScreen(state.drag.x1, state.drag.y1), [x2, y2] = toScreen(state.drag.to.x, state.drag.to.y);
    ctx.setLineDash([6, 4]); ctx.strokeStyle = "#38bdf8"; ctx.lineWidth = 2;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1); ctx.setLineDash([]);
  }
}

// The classifier's concepts of the whole image, most probable first, above the probability filter; people's
// concepts (no probability) always show.
const shownConcepts = () => state.concepts.map((c, i) => [c, i]).filter(([c]) => c.status !== "RETIRED" &&
  (c.confidence == null || c.confidence >= Number($("concept-min").value || 0)));
function renderConcepts() {
  const shown = shownConcepts(), t = TASKS.find((x) => x.name === task());
  const held = new Set(state.concepts.filter((c) => c.status === "SUCCESS").map((c) => c.concept));
  $("add-concept").innerHTML = t.image_concepts.filter((c) => !held.has(c)).map((c) => `<option>${esc(c)}</option>`).join("");
  $("concepts").innerHTML = shown.map(([c, i]) => `<div class="concept ${state.pane === "concepts" &&
    i === state.conceptSelected ? "selected" : ""}" data-i="${i}" data-id="${esc(c.annotation_id)}">
    <span class="name"><b>${esc(c.concept)}</b> ${c.confidence == null ? "" : `<span class="bar" style="width:${
      Math.round(c.confidence * 50)}px"></span> ${c.confidence.toFixed(3)}`}<br>
    <small class="${esc(c.status)}">${esc(c.status)}</small> <small>${esc(c.annotator)}</small></span>
    <button class="c-accept" title="accept">&#10003;</button><button class="c-reject" title="reject">&#10007;</button>
    </div>`).join("") || (state.queue.length && state.concepts.length
      ? "<p>No suggested concept reaches this probability.</p>" : state.queue.length ? "<p>No concepts on this image.</p>" : "");
}

// A track's frames as a strip of crops, played through with "Play"; a crop opens its frame.
const strip = { key: null, frames: [], timer: null, at: 0 };
function stopStrip() { clearInterval(strip.timer); strip.timer = null; $("track-play").textContent = "Play"; }
function showStripFrame(i) {
  strip.at = i;
  [...$("track-frames").children].forEach((img, k) => img.classList.toggle("playing", k === i));
  $("track-frames").dataset.frame = String(strip.frames[i] ? strip.frames[i].frame_index : "");
}
async function renderStrip() {
  const b = state.pane === "boxes" ? state.boxes[state.selected] : null;
  if (!b || b.track_id == null) { $("track-strip").hidden = true; stopStrip(); strip.key = null; return; }
  const key = `${b.video_id}:${b.track_id}`;
  if (key === strip.key) return;
  strip.key = key; stopStrip();
  const params = new URLSearchParams({ task: task(), video_id: b.video_id, track_id: b.track_id });
  const data = await api("GET", "/api/tracks/frames?" + params);
  if (strip.key !== key) return;
  strip.frames = data.frames;
  $("track-head").textContent = `Track ${b.track_id}: ${plural(data.frames.length, "frame")}`;
  $("track-frames").innerHTML = data.frames.map((f, i) => `<img data-i="${i}" data-input="${esc(f.input_id)}"
    title="frame ${f.frame_index} · ${esc(f.status)}" alt="frame ${f.frame_index}" src="/crops/${esc(f.annotation_id)}?size=96">`).join("");
  $("track-strip").hidden = false;
  showStripFrame(Math.max(0, data.frames.findIndex((f) => f.annotation_id === b.annotation_id)));
}
$("track-play").onclick = () => {
  if (strip.timer) { stopStrip(); return; }
  $("track-play").textContent = "Stop";
  strip.timer = setInterval(() => showStripFrame((strip.at + 1) % Math.max(1, strip.frames.length)), 250);
};
$("track-frames").addEventListener("click", (event) => {
  const img = event.target.closest("img"); if (!img) return;
  stopStrip(); showStripFrame(Number(img.dataset.i));
  if (state.queue.some((item) => item.input_id === img.dataset.input)) loadQueue(img.dataset.input).catch((e) => say(e.message));
});

function renderBoxes() {
  renderStrip().catch((e) => say(e.message));
  const shown = shownBoxes(), hidden = state.boxes.length - shown.length, counts = {};
  $("box-min-value").textContent = Number($("box-min").value).toFixed(2);
  // Boxes on the image per concept: the shown ones a person has not rejected.
  for (const i of shown) if (state.boxes[i].status !== "REJECTED") counts[state.boxes[i].concept] =
    (counts[state.boxes[i].concept] || 0) + 1;
  $("box-counts").textContent = Object.keys(counts).sort().map((c) => `${c} ${counts[c]}`).join(" · ")
    + (hidden ? ` (${plural(hidden, "suggestion")} below ${Number($("box-min").value).toFixed(2)} hidden)` : "");
  $("boxes").innerHTML = shown.map((i) => [state.boxes[i], i]).map(([b, i]) => `<div class="box ${
    state.pane === "boxes" && i === state.selected ? "selected" : ""}
    ${visible(b) ? "" : "hidden-one"}" data-i="${i}" data-id="${esc(b.annotation_id)}">
    <button class="eye-one" title="${visible(b) ? "hide" : "show"} this object">${visible(b) ? "&#128065;" : "&#8212;"
    }</button><b>${esc(b.concept)}</b>${b.original_concept ? ` <small class="was">was ${
      esc(b.original_concept)}</small>` : ""} ${b.confidence == null ? "" : b.confidence.toFixed(3)}
    ${hasPolygon(b) ? "<small>polygon</small>" : ""}
    ${b.track_id != null ? `<small class="track">track ${b.track_id} · ${plural(b.track_frames, "frame")}</small>` : ""}
    <span class="${esc(b.status)}">${esc(b.status)}</span>
    <br><small class="annotators">by ${(b.annotators || [b.annotator]).map(esc).join(", ")} (${
      (b.annotators || [b.annotator]).length})</small>
    ${b.spot_check ? `<small class="spot">spot check${b.spot_check_pending ? ": accept (a) or reject (r)" : ""}</small>` : ""}
    ${b.suspected ? `<br><small class="suspected" title="${esc(b.suspected_because)}">${esc(b.suspected)}: ${
      esc(b.suspected_because)}</small>` : ""}</div>`).join("")
    || (state.queue.length ? (hidden ? "<p>Every suggestion on this image is below the slider.</p>"
                                     : "<p>No boxes on this image.</p>") : "");
}

async function act(work, stay = true) {
  try { say(""); await work(); await loadQueue(stay ? shownId() : null); } catch (error) { say(error.message); }
}
const shownId = () => state.queue[state.index] ? state.queue[state.index].input_id : null;
const remember = (ids) => { if (ids.length) state.undo.push(ids); };
// Keys act on the selected box when it awaits review or was picked by hand (click, j, k); never on a box
// the selection merely landed on.
function target() {
  if (state.pane === "concepts") {
    const c = state.concepts[state.conceptSelected];
    if (c) return c;
    say("No classification is selected: press c to pick one.");
    return null;
  }
  const b = state.boxes[state.selected];
  if (b && shownBox(b) && (undecided(b) || state.picked)) return b;
  say(state.queue.length ? "No box awaiting review is selected on this image: press n for the next image, or pick a box."
                         : "There is no image to review.");
  return null;
}
// A box of a track (a task with a tracker) is decided with its whole track, one event per frame; alt with the
// key decides this frame only.
const wholeTrack = (b) => b.track_id != null && !state.oneFrame;
function decideTrack(b, decision, concept) {
  state.picked = false;
  act(async () => remember((await api("POST", "/api/tracks/decision", { task: task(), video_id: b.video_id,
    track_id: b.track_id, decision, concept })).annotation_ids));
}
function decide(decision, chosen) {
  const b = chosen || target(); if (!b) return;
  if (wholeTrack(b) && (decision === "accept" || decision === "reject")) { decideTrack(b, decision); return; }
  state.picked = false;
  act(async () => remember([(await api("POST", `/api/annotations/${b.annotation_id}/decision`,
                                       { decision })).annotation_id]));
}
function selectConcept(i) {
  state.pane = "concepts"; state.conceptSelected = i; state.picked = true; renderConcepts(); renderBoxes();
}
function nextConcept() {
  const shown = shownConcepts().map(([, i]) => i);
  if (!shown.length) { say("No classification is shown on this image."); return; }
  const at = shown.indexOf(state.conceptSelected);
  selectConcept(state.pane === "concepts" && at >= 0 ? shown[(at + 1) % shown.length] : shown[0]);
}
// Accepts the shown classifications still awaiting review (those at or above the probability filter).
function acceptAllConcepts() {
  if (!shownId()) return;
  act(async () => remember((await api("POST", `/api/inputs/${shownId()}/accept-above`,
    { task: task(), threshold: Number($("concept-min").value || 0), kind: "concept" })).annotation_ids));
}
function correct(b, change) {
  state.picked = false;
  act(async () => {
    const result = await api("POST", `/api/annotations/${b.annotation_id}/correct`, change);
    remember([b.annotation_id, result.annotation_id]);
  });
}
// Number key n: the selected box (or classification) becomes the task's n-th concept (a correction, undoable).
function pickConcept(n) {
  const t = TASKS.find((x) => x.name === task());
  const choices = state.pane === "concepts" ? t.image_concepts : t.concepts, concept = choices[n - 1];
  if (!concept) { say(`Task ${t.name} has ${plural(choices.length, "concept")}: press ${
    HOTKEYS[0]} to ${HOTKEYS[Math.min(choices.length, HOTKEYS.length) - 1]}.`); return; }
  const b = target(); if (!b) return;
  if (b.concept === concept) { say(`It is already ${concept}.`); return; }
  if (wholeTrack(b)) { decideTrack(b, "correct", concept); return; }
  correct(b, { concept });
}
// Sends the selected accepted box (or classification) back to review.
function reopen() {
  const b = state.pane === "concepts" ? state.concepts[state.conceptSelected] : state.boxes[state.selected];
  if (!b || b.status !== "SUCCESS") { say("Select an accepted box or classification to send it back to review."); return; }
  state.picked = false;
  decide("reopen", b);
}
// Deleting an annotation: asked first, then one event retiring it (undo brings it back).
function removeSelected() {
  const b = state.pane === "concepts" ? state.concepts[state.conceptSelected] : state.boxes[state.selected];
  if (!b) { say("Select a box or classification to delete it."); return; }
  if (!window.confirm(`Delete this ${b.concept} annotation?`)) return;
  act(async () => remember([(await api("POST", `/api/annotations/${b.annotation_id}/remove`)).annotation_id]));
}
function togglePolygonMode(on) {
  state.polygonMode = on ?? !state.polygonMode; state.draft = [];
  $("polygon-mode").setAttribute("aria-pressed", String(state.polygonMode));
  $("canvas").style.cursor = state.polygonMode ? "crosshair" : "grab";
  draw();
}
function savePolygon(b, points) {
  correct(b, { polygon: points.flat().map((v) => Math.min(1, Math.max(0, v))) });
}
// Polygon editing: the vertex of the selected polygon under the pointer (within 7 px), or the edge (within 6 px).
function vertexAt(p) {
  const b = state.boxes[state.selected];
  if (!b || !hasPolygon(b) || !visible(b)) return -1;
  return vertices(b).findIndex(([x, y]) => Math.hypot((x - p.x) * p.w, (y - p.y) * p.h) <= 7);
}
function edgeOfPolygonAt(p) {
  const b = state.boxes[state.selected];
  if (!b || !hasPolygon(b) || !visible(b)) return -1;
  const points = vertices(b).map(([x, y]) => [x * p.w, y * p.h]), q = [p.x * p.w, p.y * p.h];
  return points.findIndex((a, k) => {
    const c = points[(k + 1) % points.length], dx = c[0] - a[0], dy = c[1] - a[1];
    const t = Math.max(0, Math.min(1, ((q[0] - a[0]) * dx + (q[1] - a[1]) * dy) / (dx * dx + dy * dy || 1)));
    return Math.hypot(q[0] - a[0] - t * dx, q[1] - a[1] - t * dy) <= 6;
  });
}

function undo() {
  const ids = state.undo.pop();
  if (!ids) { say("Nothing to undo."); return; }
  act(async () => { await api("POST", "/api/undo", { annotation_ids: ids }); });
}
// The next image with boxes awaiting review, after the one shown (wrapping round); null when there is none.
function nextToReview() {
  const n = state.queue.length;
  for (let step = 1; step <= n; step++) {
    const item = state.queue[(state.index + step) % n];
    if (item.pending > 0 && item.input_id !== shownId()) return item.input_id;
  }
  return null;
}
function goNext() {
  const next = nextToReview();
  if (!next) {
    const here = state.queue[state.index];
    if (here && here.pending > 0) say("This is the only image left with boxes to review.");
    else banner(state.queue.length ? `All done: every image in your queue of ${task()} is reviewed.` : "");
    return;
  }
  state.picked = false; state.selected = -1;
  loadQueue(next).catch((e) => say(e.message));
}

function imagePoint(event) {
  const rect = $("canvas").getBoundingClientRect(), { scale, ox, oy } = state.view;
  return { x: (event.clientX - rect.left - ox) / (state.image.width * scale),
           y: (event.clientY - rect.top - oy) / (state.image.height * scale),
           sx: event.clientX - rect.left, sy: event.clientY - rect.top,
           w: state.image.width * scale, h: state.image.height * scale };
}
function edgeAt(p) {
  const b = state.boxes[state.selected]; if (!b) return null;
  const edges = { x1: Math.abs(p.x - b.x1) * p.w, x2: Math.abs(p.x - b.x2) * p.w,
                  y1: Math.abs(p.y - b.y1) * p.h, y2: Math.abs(p.y - b.y2) * p.h };
  const inside = p.x > b.x1 - 0.02 && p.x < b.x2 + 0.02 && p.y > b.y1 - 0.02 && p.y < b.y2 + 0.02;
  const [edge, distance] = Object.entries(edges).sort((a, c) => a[1] - c[1])[0];
  return inside && distance < 8 ? edge : null;
}
const hitAt = (p) => state.boxes.findIndex((c) => shownBox(c) && visible(c) && p.x >= c.x1 && p.x <= c.x2 && p.y >= c.y1 &&
                                                p.y <= c.y2);
$("canvas").addEventListener("mousedown", (event) => {
  if (!state.image || !state.view) return;
  releaseFocus();
  const p = imagePoint(event);
  if (state.polygonMode) {  // a vertex per click; a click on the first vertex closes the polygon
    const first = state.draft[0];
    if (first && state.draft.length >= 3 && Math.hypot((first[0] - p.x) * p.w, (first[1] - p.y) * p.h) <= 8) {
      const polygon = state.draft.flat().map((v) => Math.min(1, Math.max(0, v)));
      togglePolygonMode(false);
      return act(async () => remember([(await api("POST", `/api/inputs/${shownId()}/polygons`,
        { task: task(), concept: $("new-concept").value, polygon })).annotation_id]));
    }
    state.draft.push([p.x, p.y]); draw(); return;
  }
  if (event.shiftKey) { state.drag = { kind: "new", x1: p.x, y1: p.y }; return; }
  const vertex = vertexAt(p);
  if (vertex >= 0 && event.altKey) {  // alt-click deletes a vertex (a polygon keeps at least three)
    const b = state.boxes[state.selected], points = vertices(b);
    if (points.length <= 3) { say("A polygon keeps at least three vertices."); return; }
    points.splice(vertex, 1); savePolygon(b, points); return;
  }
  if (vertex >= 0) {
    state.drag = { kind: "vertex", vertex, box: { ...state.boxes[state.selected] },
                   points: vertices(state.boxes[state.selected]) };
    return;
  }
  const edge = hasPolygon(state.boxes[state.selected] || {}) ? null : edgeAt(p);
  if (edge) { state.drag = { kind: "edge", edge, box: { ...state.boxes[state.selected] } }; return; }
  const hit = hitAt(p);
  if (hit >= 0) { state.selected = hit; state.picked = true; state.pane = "boxes"; draw(); renderBoxes();
                  renderConcepts(); return; }
  state.drag = { kind: "pan", sx: p.sx, sy: p.sy, ox: state.view.ox, oy: state.view.oy };
});
$("canvas").addEventListener("mousemove", (event) => {
  if (!state.image || !state.view) return;
  const p = imagePoint(event), canvas = $("canvas"), drag = state.drag;
  if (!drag) {  // where a drag would do something, the cursor says what
    const edge = hasPolygon(state.boxes[state.selected] || {}) ? null : edgeAt(p);
    canvas.style.cursor = event.shiftKey || state.polygonMode ? "crosshair" : vertexAt(p) >= 0 ? "move"
      : edge ? (edge[0] === "x" ? "ew-resize" : "ns-resize") : hitAt(p) >= 0 ? "pointer" : "grab";
    return;
  }
  if (drag.kind === "pan") { state.view.ox = drag.ox + p.sx - drag.sx; state.view.oy = drag.oy + p.sy - drag.sy; }
  if (drag.kind === "new") drag.to = { x: p.x, y: p.y };
  if (drag.kind === "vertex") {
    drag.points[drag.vertex] = [Math.min(1, Math.max(0, p.x)), Math.min(1, Math.max(0, p.y))];
    state.boxes[state.selected] = { ...state.boxes[state.selected], polygon: drag.points.flat() };
    drag.moved = true;
  }
  if (drag.kind === "edge") {
    state.boxes[state.selected][drag.edge] = Math.min(1, Math.max(0, drag.edge.startsWith("x") ? p.x : p.y));
  }
  draw();
});
$("canvas").addEventListener("mouseup", (event) => {
  const drag = state.drag; state.drag = null;
  if (!drag || drag.kind === "pan") return;
  const p = imagePoint(event), clamp = (v) => Math.min(1, Math.max(0, v));
  if (drag.kind === "new") {
    const box = { x1: clamp(Math.min(drag.x1, p.x)), y1: clamp(Math.min(drag.y1, p.y)),
                  x2: clamp(Math.max(drag.x1, p.x)), y2: clamp(Math.max(drag.y1, p.y)) };
    if (box.x2 - box.x1 < 0.002 || box.y2 - box.y1 < 0.002) { draw(); return; }
    return act(async () => remember([(await api("POST", `/api/inputs/${shownId()}/boxes`,
                                                { task: task(), concept: $("new-concept").value, box })).annotation_id]));
  }
  if (drag.kind === "vertex") { if (drag.moved) savePolygon(drag.box, drag.points); else draw(); return; }
  const b = state.boxes[state.selected];
  const box = { x1: Math.min(b.x1, b.x2), y1: Math.min(b.y1, b.y2), x2: Math.max(b.x1, b.x2), y2: Math.max(b.y1, b.y2) };
  correct(drag.box, { box });
});
$("canvas").addEventListener("dblclick", (event) => {  // a vertex inserted on the edge double-clicked
  if (!state.view || state.polygonMode) return;
  const p = imagePoint(event), edge = edgeOfPolygonAt(p);
  if (edge < 0) return;
  const b = state.boxes[state.selected], points = vertices(b);
  points.splice(edge + 1, 0, [p.x, p.y]);
  savePolygon(b, points);
});
function zoom(factor, sx, sy) {
  if (!state.view) return;
  const canvas = $("canvas");
  sx = sx ?? canvas.clientWidth / 2; sy = sy ?? canvas.clientHeight / 2;
  const scale = Math.min(Math.max(state.view.scale * factor, fitView().scale / 4), 40);
  const applied = scale / state.view.scale;
  state.view = { scale, ox: sx - (sx - state.view.ox) * applied, oy: sy - (sy - state.view.oy) * applied };
  draw();
}
$("canvas").addEventListener("wheel", (event) => {
  event.preventDefault();
  const rect = $("canvas").getBoundingClientRect();
  zoom(event.deltaY < 0 ? 1.2 : 1 / 1.2, event.clientX - rect.left, event.clientY - rect.top);
}, { passive: false });
new ResizeObserver(() => { state.view = null; draw(); }).observe($("stage"));

// Picking a box or an image hands the keyboard back to the shortcuts (away from a filter or picker).
const releaseFocus = () => { if (document.activeElement) document.activeElement.blur(); };
$("boxes").addEventListener("click", (event) => {
  const row = event.target.closest(".box"); if (!row) return;
  releaseFocus();
  if (event.target.closest(".eye-one")) {
    const id = state.boxes[Number(row.dataset.i)].annotation_id;
    if (state.hiddenIds.has(id)) state.hiddenIds.delete(id); else state.hiddenIds.add(id);
    draw(); renderBoxes(); return;
  }
  state.selected = Number(row.dataset.i); state.picked = true; state.pane = "boxes"; draw(); renderBoxes();
  renderConcepts();
});
$("concepts").addEventListener("click", (event) => {
  const row = event.target.closest(".concept"); if (!row) return;
  releaseFocus();
  const chosen = state.concepts[Number(row.dataset.i)];
  selectConcept(Number(row.dataset.i));
  if (event.target.closest(".c-accept")) decide("accept", chosen);
  if (event.target.closest(".c-reject")) decide("reject", chosen);
});
$("concept-min").addEventListener("input", renderConcepts);
$("box-min").addEventListener("input", () => {
  if (state.boxes[state.selected] && !shownBox(state.boxes[state.selected])) {
    state.selected = state.boxes.findIndex((b) => undecided(b) && shownBox(b)); state.picked = false;
  }
  draw(); renderBoxes();
});
$("reopen").onclick = reopen;
$("delete").onclick = removeSelected;
$("polygon-mode").onclick = () => togglePolygonMode();
$("concept-search").addEventListener("input", fillConceptPickers);
$("concept-eyes").addEventListener("change", (event) => {
  const concept = event.target.dataset.concept; if (concept === undefined) return;
  if (event.target.checked) state.hiddenConcepts.delete(concept); else state.hiddenConcepts.add(concept);
  draw(); renderBoxes();
});
$("concepts-accept-all").onclick = acceptAllConcepts;
$("add-concept-go").onclick = () => {
  if (!shownId()) return;
  act(async () => remember([(await api("POST", `/api/inputs/${shownId()}/concepts`,
                                       { task: task(), concept: $("add-concept").value })).annotation_id]));
};
$("queue-items").addEventListener("click", (event) => {
  const row = event.target.closest("div[data-i]"); if (!row) return;
  releaseFocus();
  state.picked = false; state.selected = -1;
  loadQueue(row.dataset.input).catch((e) => say(e.message));
});
$("accept").onclick = () => decide("accept");
$("reject").onclick = () => decide("reject");
$("undo").onclick = undo;
$("relabel-go").onclick = () => { const b = target(); if (b) correct(b, { concept: $("relabel").value }); };
$("above-go").onclick = () => act(async () => remember((await api("POST", `/api/inputs/${shownId()}/accept-above`,
  { task: task(), threshold: Number($("above").value) })).annotation_ids));
$("next").onclick = goNext;
let finishing = false;  // a second `d` while the first is saving would act on the image it is leaving
$("done").onclick = async () => {
  if (!shownId() || finishing) return;
  finishing = true;
  try {
    say("");
    // Accepts what is left awaiting review and shown: suggestions hidden below the slider stay undecided.
    remember((await api("POST", `/api/inputs/${shownId()}/accept-above`,
                        { task: task(), threshold: Number($("box-min").value) })).annotation_ids);
    await loadQueue(shownId());
    goNext();
  } catch (error) { say(error.message); } finally { finishing = false; }
};
document.addEventListener("keydown", (event) => {
  if (event.target.tagName === "INPUT" || event.target.tagName === "SELECT" || event.ctrlKey || event.metaKey) return;
  state.oneFrame = event.altKey;
  const step = (d) => {
    const shown = shownBoxes(); if (!shown.length) return;
    const at = shown.indexOf(state.selected);
    state.selected = shown[at < 0 ? (d > 0 ? 0 : shown.length - 1) : (at + d + shown.length) % shown.length];
    state.picked = true; state.pane = "boxes"; draw(); renderBoxes(); renderConcepts();
  };
  const pan = { ArrowLeft: [60, 0], ArrowRight: [-60, 0], ArrowUp: [0, 60], ArrowDown: [0, -60] }[event.key];
  if (pan && state.view) { event.preventDefault(); state.view.ox += pan[0]; state.view.oy += pan[1]; draw(); return; }
  const actions = { j: () => step(1), k: () => step(-1), a: () => decide("accept"), r: () => decide("reject"),
    c: nextConcept, A: acceptAllConcepts, u: undo, n: goNext, d: () => $("done").click(), "+": () => zoom(1.25), "=": () => zoom(1.25),
    "-": () => zoom(0.8), f: () => { state.view = null; draw(); }, x: removeSelected,
    p: () => togglePolygonMode(), Escape: () => togglePolygonMode(false) };
  if (actions[event.key]) actions[event.key]();
  const digit = /^Digit([0-9])$/.exec(event.code);
  if (digit) pickConcept(HOTKEYS.indexOf((event.shiftKey ? "shift+" : "") + digit[1]) + 1);
  if (event.key === "b") reopen();
});
for (const id of ["f-status", "f-concept", "f-labeler", "f-combine"]) {
  $(id).addEventListener("change", () => loadQueue(null).catch((e) => say(e.message)));
}
$("task").addEventListener("change", () => { fillTask(); state.undo = []; loadQueue(null).catch((e) => say(e.message)); });
window.addEventListener("error", (event) => say(`Something went wrong on this page: ${event.message}. Reload it.`));
const wantedTask = new URLSearchParams(location.search).get("task");  // a link from the tasks page
if (wantedTask && TASKS.some((t) => t.name === wantedTask)) $("task").value = wantedTask;
fillTask();
loadQueue(null).catch((e) => say(e.message));

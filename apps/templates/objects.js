// The objects gallery: a crop of every object annotation of a task, filtered, paged by key (never by offset),
// selected by click, shift-click or "all matching", and changed in bulk (one event per annotation).
const PAGE_SIZE = 60;
const state = { items: [], next: null, total: 0, selected: new Set(), last: -1, allMatching: false, filters: null };
const task = () => $("task").value;
const taskInfo = () => PAGE.tasks.find((t) => t.name === task());
const picked = (select) => [...select.selectedOptions].map((o) => o.value);

function readFilters() {
  const number = (id) => ($(id).value === "" ? null : Number($(id).value));
  return { task: task(), concept: picked($("f-concept")), status: picked($("f-status")),
           labeler: $("f-labeler").value.trim() ? [$("f-labeler").value.trim()] : [],
           combine: $("f-combine").value, min_confidence: number("f-min"), max_confidence: number("f-max") };
}

function query(filters, after) {
  const params = new URLSearchParams({ task: filters.task, combine: filters.combine, limit: PAGE_SIZE });
  for (const key of ["concept", "status", "labeler"]) filters[key].forEach((v) => params.append(key, v));
  if (filters.min_confidence !== null) params.set("min_confidence", filters.min_confidence);
  if (filters.max_confidence !== null) params.set("max_confidence", filters.max_confidence);
  if (after) params.set("after", after);
  return "/api/objects?" + params;
}

function fillTask() {
  const t = taskInfo();
  const options = (list) => list.map((c) => `<option value="${esc(c)}">${esc(c)}</option>`).join("");
  $("f-concept").innerHTML = options(t.concepts);
  $("relabel-concept").innerHTML = options(t.concepts);
  $("add-concept").innerHTML = options(t.image_concepts);
  $("image-concepts").hidden = !t.image_concepts.length;
}

function tile(item, index) {
  const confidence = item.confidence === null ? "drawn by a person" : item.confidence.toFixed(3);
  const was = item.original_concept ? ` <small>(was ${esc(item.original_concept)})</small>` : "";
  return `<div class="tile ${state.allMatching || state.selected.has(item.annotation_id) ? "selected" : ""}"
    data-i="${index}" data-annotation="${esc(item.annotation_id)}" title="${esc(item.file)}">
    <img loading="lazy" alt="${esc(item.concept)}" src="/crops/${esc(item.annotation_id)}">
    <b>${esc(item.concept)}</b>${was} <span class="${esc(item.status)}">${esc(item.status)}</span><br>
    <small>${esc(confidence)} · ${esc(item.file)}</small><br>
    <small class="who">${item.annotators.map(esc).join(", ")} (${item.annotators.length})</small>
    <button class="more-like">More like this</button></div>`;
}

// "More like this": the task's objects on other images nearest to one, by cosine similarity of their embeddings.
async function showSimilar(item) {
  say("");
  $("similar").hidden = false;
  $("similar-head").textContent = `Objects most like ${item.concept} on ${item.file} (embedding the task's ` +
    "objects the first time may take a while) ...";
  $("similar-grid").innerHTML = "";
  try {
    const found = await api("GET", `/api/objects/${item.annotation_id}/similar?task=${encodeURIComponent(task())}`);
    $("similar-head").textContent = `${found.similar.length} objects most like ${item.concept} on ${item.file}`;
    $("similar-grid").innerHTML = found.similar.map((o) => `<div class="tile similar-tile"
      data-annotation="${esc(o.annotation_id)}"><img loading="lazy" alt="${esc(o.concept)}"
      src="/crops/${esc(o.annotation_id)}"><b>${esc(o.concept)}</b> <span class="${esc(o.status)}">${esc(o.status)}
      </span><br><small>similarity ${o.similarity.toFixed(3)} · ${esc(o.file)}</small></div>`).join("");
  } catch (error) { say(error.message); }
}
$("similar-close").onclick = () => { $("similar").hidden = true; };

function render() {
  $("grid").innerHTML = state.items.map(tile).join("");
  $("count").textContent = `${state.total} matching · ${state.items.length} shown`;
  $("select-all").textContent = `Select all ${state.total} matching`;
  $("selected").textContent = `${state.allMatching ? state.total : state.selected.size} selected`;
  $("more").hidden = !state.next;
}

async function load(fresh) {
  say("");
  if (fresh) {
    state.filters = readFilters();
    Object.assign(state, { items: [], next: null, selected: new Set(), last: -1, allMatching: false });
  }
  try {
    const page = await api("GET", query(state.filters, fresh ? null : state.next));
    state.items = state.items.concat(page.items);
    state.next = page.next; state.total = page.total;
    render();
  } catch (error) { say(error.message); }
}

$("grid").addEventListener("click", (event) => {
  const el = event.target.closest(".tile");
  if (!el) return;
  const index = Number(el.dataset.i);
  if (event.target.classList.contains("more-like")) { showSimilar(state.items[index]); return; }
  state.allMatching = false;
  if (event.shiftKey && state.last >= 0) {  // a range, from the tile clicked last
    const [from, to] = [Math.min(state.last, index), Math.max(state.last, index)];
    for (let i = from; i <= to; i++) state.selected.add(state.items[i].annotation_id);
  } else {
    const id = state.items[index].annotation_id;
    if (state.selected.has(id)) state.selected.delete(id); else state.selected.add(id);
  }
  state.last = index;
  render();
});

function chosen() {
  return state.allMatching ? { matching: state.filters } : { annotation_ids: [...state.selected] };
}

async function bulk(action, extra, question) {
  const count = state.allMatching ? state.total : state.selected.size;
  if (!count) { say("Select objects first (click a tile, shift-click a range, or select all matching)."); return; }
  if (question && !window.confirm(question.replace("N", count))) return;
  try {
    const done = await api("POST", "/api/objects/bulk", { action, task: task(), ...chosen(), ...extra });
    await load(true);  // the page shows the new statuses before it says the action is done
    tell(`${action}: ${done.written} event(s) written for ${count} selected.`);
  } catch (error) { say(error.message); }
}

$("accept").onclick = () => bulk("accept");
$("reject").onclick = () => bulk("reject");
$("relabel").onclick = () => bulk("relabel", { concept: $("relabel-concept").value });
$("remove").onclick = () => bulk("remove", {}, "Remove the N selected annotations?");
$("add-concept-go").onclick = () => bulk("add_concept", { concept: $("add-concept").value });
$("delete-images").onclick = async () => {
  if (state.allMatching) { say("Deleting images takes a selection of tiles, not every match."); return; }
  const inputs = [...new Set(state.items.filter((i) => state.selected.has(i.annotation_id)).map((i) => i.input_id))];
  if (!inputs.length) { say("Select an object of each image to delete."); return; }
  if (!window.confirm(`Delete ${inputs.length} image(s) from every task? Earlier versions keep them.`)) return;
  try {
    const sentences = [];
    for (const id of inputs) sentences.push((await api("POST", `/api/inputs/${id}/delete`, { purge: false })).sentence);
    await load(true);
    tell(sentences.join(" "));
  } catch (error) { say(error.message); }
};
$("select-all").onclick = () => { state.allMatching = true; render(); };
$("clear").onclick = () => { state.allMatching = false; state.selected = new Set(); render(); };
$("more").onclick = () => load(false);
$("apply").onclick = () => load(true);
$("task").onchange = () => { fillTask(); load(true); };

const wanted = new URLSearchParams(location.search).get("task");
if (wanted && PAGE.tasks.some((t) => t.name === wanted)) $("task").value = wanted;
fillTask();
load(true);

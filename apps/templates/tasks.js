// The lead's tasks page: one row per task, refreshed every few seconds while a run goes (no reload).
const REFRESH_MS = 3000;
const percentBar = (pct, part, whole, what) =>
  `<span class="bar" style="width:${Math.round(pct * 0.6)}px"></span> ${pct}%<br><small class="muted">` +
  `${part} / ${whole} ${what}</small>`;

function row(t) {
  const dagster = PAGE.dagster_url;
  const name = encodeURIComponent(t.name);
  const counts = Object.entries(t.annotations).map(([s, n]) => `<span class="${esc(s)}">${esc(s)} ${n}</span>`)
    .join(" · ");
  return `<tr data-task="${esc(t.name)}">
    <td><b class="task-name">${esc(t.name)}</b><br><small>${counts}</small></td>
    <td class="labeling">${percentBar(t.labeled_pct, t.processed, t.inputs, "inputs processed")}</td>
    <td class="reviewing">${percentBar(t.reviewed_pct, t.reviewed, t.assigned, "images reviewed")}</td>
    <td>${esc(t.dataset)}</td><td>${esc(t.priority)}</td>
    <td>${t.concepts.map(esc).join(", ")}${t.image_concepts.length ? "<br><small>image: " +
      t.image_concepts.map(esc).join(", ") + "</small>" : ""}</td>
    <td>${t.labelers.map(esc).join(", ")}</td>
    <td><small>${t.model_id ? esc(t.model_id.slice(0, 12)) : "none yet"}</small></td>
    <td class="versions"><small>${t.versions.slice(0, 3).map(esc).join("<br>") || "none"}</small></td>
    <td><button class="copy-id">Copy id</button>
      <input class="version-name" size="10" placeholder="version name" aria-label="version name">
      <button class="create-version">Create version</button><br>
      <a href="/review?task=${name}">Review</a> · <a href="/objects?task=${name}">Objects</a>
      ${dagster ? `· <a class="dagster" href="${esc(dagster)}/assets/annotations">Dagster assets</a>` : ""}</td>
  </tr>`;
}

let shown = "";
async function refresh() {
  try {
    const tasks = await api("GET", "/api/overview");
    const html = tasks.map(row).join("");
    if (html !== shown) {  // typing a version name survives a refresh that changed nothing
      const typed = Object.fromEntries([...document.querySelectorAll("tr[data-task]")].map(
        (tr) => [tr.dataset.task, tr.querySelector(".version-name").value]));
      document.querySelector("#tasks tbody").innerHTML = html;
      document.querySelectorAll("tr[data-task]").forEach((tr) => {
        tr.querySelector(".version-name").value = typed[tr.dataset.task] || ""; });
      shown = html;
    }
    $("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) { say(error.message); }
}

document.querySelector("#tasks tbody").addEventListener("click", async (event) => {
  const tr = event.target.closest("tr[data-task]");
  if (!tr) return;
  const task = tr.dataset.task;
  if (event.target.classList.contains("copy-id")) {
    try { await navigator.clipboard.writeText(task); tell(`Copied the task id ${task}.`); }
    catch { tell(`The task id is ${task} (the browser did not allow copying).`); }
  } else if (event.target.classList.contains("create-version")) {
    const name = tr.querySelector(".version-name").value.trim();
    say(""); tell("");
    if (!name) { say("Type a version name first (e.g. release-3)."); return; }
    try {
      const built = await api("POST", `/api/tasks/${encodeURIComponent(task)}/versions`, { name });
      const [key, v] = Object.entries(built)[0];
      tell(`Created ${key}: ${v.annotations} annotations on ${v.inputs} images, ${v.negatives} negatives.`);
      tr.querySelector(".version-name").value = "";
      refresh();
    } catch (error) { say(error.message); }
  }
});

refresh();
setInterval(refresh, REFRESH_MS);

// What the lead's pages share. The page's data arrive as JSON (a data block, never run as script); every string
// from data is put on the page as text: `textContent`, or `esc` inside the HTML the tables are built from.
const PAGE = JSON.parse(document.getElementById("page-data").textContent);
const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const esc = (value) => String(value).replace(/[&<>"']/g, (ch) => ESCAPES[ch]);
const $ = (id) => document.getElementById(id);
function say(text) { $("message").textContent = text || ""; }
function tell(text) { $("notice").textContent = text || ""; }

async function api(method, url, body) {
  const response = await fetch(url, { method, headers: { "Content-Type": "application/json" },
                                      body: body ? JSON.stringify(body) : undefined });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(typeof data.detail === "string" ? data.detail : `the server answered ${response.status}`);
  }
  return data;
}

// The personal link's last step. The token goes to the server in a same-site POST (another site's page cannot
// send one), so a link planted by another site cannot sign this browser in as someone else unnoticed; a browser
// already signed in as another person is asked before it switches.
const main = document.getElementById("signin");
const token = main.dataset.token;
history.replaceState(null, "", "/"); // the token leaves the address bar (and the history)

async function signIn(switching) {
  let answer;
  try {
    answer = await fetch("/api/session", {method: "POST", headers: {"Content-Type": "application/json"},
                                           body: JSON.stringify({token, switch: switching})});
  } catch (error) {
    show("The review server did not answer; open the link again.", false);
    return;
  }
  if (answer.ok) {
    location.replace("/");
    return;
  }
  const body = await answer.json().catch(() => ({detail: "The review server refused the link."}));
  show(body.detail, answer.status === 409);
}

function show(sentence, ask) {
  document.getElementById("signin-sentence").textContent = sentence; // names are text, never markup
  document.getElementById("signin-choice").hidden = !ask;
}

document.getElementById("switch").addEventListener("click", () => signIn(true));
document.getElementById("stay").addEventListener("click", () => location.replace("/"));
signIn(false);

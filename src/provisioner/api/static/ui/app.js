// The dashboard: routes in the address's hash (#/releases, #/operations/{id}...), so the page
// is one static file the service serves as is; each view gets an AbortSignal that ends its
// live updates when the user goes elsewhere.
import { onSessionChange, sessionState, signIn, signOut } from "./api.js";
import { h } from "./dom.js";
import * as operation from "./views/operation.js";
import * as operations from "./views/operations.js";
import * as release from "./views/release.js";
import * as releases from "./views/releases.js";

const ROUTES = [
  [/^\/releases$/, "releases", releases.render],
  [/^\/releases\/([^/]+)\/([^/]+)$/, "releases", release.render],
  [/^\/operations$/, "operations", operations.render],
  [/^\/operations\/([^/]+)$/, "operations", operation.render],
];

let shown = null; // the AbortController of the view on screen

function where() {
  const hash = location.hash.replace(/^#/, "");
  const mark = hash.indexOf("?");
  const path = (mark === -1 ? hash : hash.slice(0, mark)) || "/releases";
  return { path, params: new URLSearchParams(mark === -1 ? "" : hash.slice(mark + 1)) };
}

function route({ focus = true } = {}) {
  shown?.abort();
  shown = new AbortController();
  const main = document.getElementById("main");
  main.replaceChildren();
  const { path, params } = where();
  for (const [pattern, section, render] of ROUTES) {
    const match = path.match(pattern);
    if (!match) continue;
    let args;
    try {
      args = match.slice(1).map(decodeURIComponent);
    } catch {
      break; // a malformed escape: not a page
    }
    highlight(section);
    render(main, { args, params, signal: shown.signal });
    if (focus) main.querySelector("h1")?.focus({ preventScroll: true });
    return;
  }
  highlight(null);
  main.append(h("h1", { tabindex: -1 }, "No such page"),
    h("p", {}, h("a", { href: "#/releases" }, "See the releases")));
}

function highlight(section) {
  for (const link of document.querySelectorAll("nav a[data-section]")) {
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

/** The header's corner: signed in (with a token) → Sign out; asked and declined → Sign in. */
function renderSession() {
  const corner = document.getElementById("session");
  const { token, declined } = sessionState();
  corner.replaceChildren();
  if (token) {
    corner.append(h("span", { class: "hint" }, "Token set"), " ",
      h("button", { type: "button", class: "link", onclick: () => {
        signOut();
        route();
      } }, "Sign out"));
  } else if (declined) {
    corner.append(h("button", { type: "button", class: "link", onclick: async () => {
      if (await signIn()) route();
    } }, "Sign in"));
  }
}

onSessionChange(renderSession);
window.addEventListener("hashchange", () => route());
renderSession();
route({ focus: false });

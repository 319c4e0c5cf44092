// Pieces the views share: tables, the "could not load" panel, the live indicator, filters
// kept in the address (so that a filtered view can be reloaded and shared).
import { ApiError, signIn } from "../api.js";
import { h } from "../dom.js";

/** A table: `columns` are header texts, `rows` arrays of cells (text or elements). */
export function table(caption, columns, rows, { empty = "Nothing to show." } = {}) {
  if (rows.length === 0) return h("p", { class: "empty" }, empty);
  return h("table", {},
    h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, columns.map((column) => h("th", { scope: "col" }, column)))),
    h("tbody", {}, rows.map((row) => h("tr", {}, row.map((cell) => h("td", {}, cell))))));
}

/** What to show instead of data that could not be loaded; `again()` re-renders the view. */
export function loadError(error, again) {
  if (error instanceof ApiError && error.status === 401) {
    return h("div", { class: "panel warning", role: "alert" },
      h("p", {}, "This service needs a token to show this."),
      h("button", { type: "button", class: "primary", onclick: async () => {
        if (await signIn()) again();
      } }, "Sign in"));
  }
  let text;
  if (!(error instanceof ApiError)) text = `The service cannot be reached (${error.message}).`;
  else if (error.status === 403) text = `Your token may not read this: ${error.message}`;
  else if (error.status === 404) text = `Not found: ${error.message}`;
  else text = `Could not load (${error.status}): ${error.message}`;
  return h("div", { class: "panel error", role: "alert" }, h("p", {}, text));
}

/** "Live · updated 12:00:01", or what went wrong with the last refresh. */
export function liveIndicator() {
  const element = h("p", { class: "live", "aria-live": "off" });
  return {
    element,
    ok(text = "Live") {
      element.dataset.state = "ok";
      element.textContent = `${text} · updated ${new Date().toLocaleTimeString()}`;
    },
    failed(error) {
      element.dataset.state = "failed";
      element.textContent = `Not updating: ${error.message}`;
    },
  };
}

/** The view's filters, from the address's query (#/releases?status=CORRUPT). */
export function readFilters(params, names) {
  return Object.fromEntries(names.map((name) => [name, params.get(name) ?? ""]));
}

/** Put the filters in the address without adding a history entry per keystroke. */
export function writeFilters(path, filters) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(filters)) if (value) query.set(name, value);
  const text = query.toString();
  history.replaceState(null, "", `#${path}${text ? `?${text}` : ""}`);
}

/** A select of statuses with an "any" choice. */
export function statusSelect(name, statuses, value) {
  return h("select", { name, id: `filter-${name}` },
    h("option", { value: "" }, "any"),
    statuses.map((status) => h("option", { value: status, selected: status === value }, status)));
}

export function field(label, control) {
  return h("label", { class: "field" }, h("span", {}, label), control);
}

/** Re-run `action` at most every `ms` while typing. */
export function debounce(action, ms = 300) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => action(...args), ms);
  };
}

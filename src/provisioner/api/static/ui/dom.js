// Building the page. Every text reaches the DOM as a text node (never as HTML): ids, errors,
// logs and info come from descriptors and Tech Adapters and are untrusted.

const SVG_NS = "http://www.w3.org/2000/svg";

/** An element: h("a", {href: "#/x", class: "link"}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element, like h(). */
export function svg(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(element, attrs, children) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/**
 * Replace the content of `container`, keeping keyboard focus on the element with the same
 * data-key if there is one (live updates must not throw a keyboard user back to the top).
 */
export function replaceContent(container, ...children) {
  const focused = document.activeElement;
  const key = focused && container.contains(focused) ? focused.dataset.key : undefined;
  container.replaceChildren();
  append(container, children);
  if (key !== undefined) {
    const again = container.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again) again.focus({ preventScroll: true });
  }
}

/**
 * `replaceContent`, unless the new children would draw exactly what is there (same markup):
 * then the elements in place stay. The live updates redraw a page several times as it loads;
 * a button replaced between the press and the release of a click loses that click.
 */
export function replaceContentIfChanged(container, children) {
  const drawn = [...container.childNodes];
  const same = drawn.length === children.length
    && children.every((child, index) => child.outerHTML === drawn[index].outerHTML);
  if (!same) replaceContent(container, ...children);
}

// --- statuses ---------------------------------------------------------------------------

// A symbol beside every status, so that the status never rests on colour alone.
const SYMBOLS = {
  WAITING: "○", PENDING: "○", RUNNING: "◐", IN_PROGRESS: "◐",
  SUCCEEDED: "✓", DEPLOYED: "✓", FAILED: "✕", CORRUPT: "✕",
  SKIPPED: "↷", CANCELLED: "⊘", NOT_DEPLOYED: "–", PARTIALLY_DEPLOYED: "◑",
};

export function statusLabel(status) {
  return `${SYMBOLS[status] ?? "?"} ${status ?? "unknown"}`;
}

/** A status badge: its colour comes from the stylesheet's [data-status] rules. */
export function badge(status, attrs = {}) {
  return h("span", { class: "badge", "data-status": status, ...attrs }, statusLabel(status));
}

export const ACTIVE_OPERATION = new Set(["PENDING", "RUNNING"]);
export const ENDED_OPERATION = new Set(["SUCCEEDED", "FAILED", "CANCELLED"]);

// --- values -----------------------------------------------------------------------------

/** "2026-12-01 22:49:19", in the browser's time zone (the full ISO time is its title). */
export function formatTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  const two = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())} `
    + `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`;
}

export function timeCell(iso) {
  return iso ? h("time", { datetime: iso, title: iso }, formatTime(iso)) : "—";
}

/** "1.2 s", "3 min 4 s": from start to end, or to now while it runs. */
export function formatDuration(start, end) {
  if (!start) return "—";
  const ms = (end ? new Date(end) : new Date()) - new Date(start);
  if (!Number.isFinite(ms) || ms < 0) return "—";
  if (ms < 1000) return `${ms} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/**
 * A short name for a component: what follows its unit's id (urn:…:0:raw-storage →
 * raw-storage), else its last segment; the system step is the unit itself.
 */
const OPERATION_NAMES = {
  DEPLOY: "deploy", UNDEPLOY: "undeploy", UPDATE_ACL: "ACL update", OVERRIDE: "override",
};

/** An operation's type as a sentence says it ("ACL update"); an unknown one as it comes. */
export function operationName(type) {
  return OPERATION_NAMES[type] ?? String(type).toLowerCase();
}

export function shortName(componentId, unitId) {
  if (componentId === unitId) return "system step";
  if (unitId && componentId.startsWith(`${unitId}:`)) return componentId.slice(unitId.length + 1);
  const parts = componentId.split(":");
  return parts[parts.length - 1] || componentId;
}

/** A <dl> of [name, value] pairs, each pair in its own <div> so that they wrap as pairs. */
export function facts(pairs, { single = false } = {}) {
  return h("dl", { class: single ? "facts single" : "facts" },
    pairs.filter(Boolean).map(([name, value]) => h("div", {}, h("dt", {}, name), h("dd", {}, value))));
}

export function json(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

// --- links ------------------------------------------------------------------------------

export function operationHref(id) {
  return `#/operations/${encodeURIComponent(id)}`;
}

export function releaseHref(unitId, environment) {
  return `#/releases/${encodeURIComponent(unitId)}/${encodeURIComponent(environment)}`;
}

// --- notices ----------------------------------------------------------------------------

/** A message in the live region at the bottom of the page; errors stay until dismissed. */
export function notify(text, { error = false } = {}) {
  const region = document.getElementById("notices");
  const close = h("button", { type: "button", class: "link", "aria-label": "Dismiss" }, "×");
  const item = h("div", { class: error ? "notice error" : "notice", role: error ? "alert" : null },
    h("span", {}, text), close);
  close.addEventListener("click", () => item.remove());
  region.append(item);
  if (!error) setTimeout(() => item.remove(), 6000);
}

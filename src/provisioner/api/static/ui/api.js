// The REST API, from the browser. With authentication on, a 401 asks for a token once; the
// token is kept in this tab's sessionStorage (gone when the tab closes; never a cookie or
// localStorage) and sent as `Authorization: Bearer`. Error answers are RFC 9457 problems.
import { ask } from "./dialog.js";
import { h } from "./dom.js";

const TOKEN_KEY = "provisioner.token";
export const root = document.querySelector('meta[name="provisioner-root"]')?.content ?? "";

/** An answer that was not 2xx, with its problem details when the server sent them. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `the server answered ${status}`);
    this.status = status;
    this.problem = problem ?? {};
  }

  /** The endpoint itself does not exist on this server (an older version, a feature off). */
  get endpointMissing() {
    // A missing route is answered 404 "Not Found" (405 for a missing method); a missing
    // resource is a 404 whose detail names it.
    return this.status === 405 || (this.status === 404 && this.problem.detail === "Not Found");
  }
}

// --- the token --------------------------------------------------------------------------

let prompt = null; // the token dialog on screen, shared by every request waiting for it
let declined = false; // the user dismissed it: do not ask again until they sign in
const listeners = new Set();

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Called with no argument whenever the session changes (signed in, out, refused). */
export function onSessionChange(listener) {
  listeners.add(listener);
}

export function sessionState() {
  return { token: token() !== null, declined };
}

function changed() {
  for (const listener of listeners) listener();
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  changed();
}

/** Ask for a token (again); resolves to true when one was given. */
export function signIn(reason = "This service needs a token.") {
  declined = false;
  prompt ??= ask({
    title: "Sign in",
    body: [
      h("p", {}, reason),
      h("p", { class: "hint" },
        "It is sent as Authorization: Bearer and kept in this tab only, until it closes."),
      h("label", {}, "Token", h("input", {
        name: "token", type: "password", autocomplete: "off", spellcheck: "false", required: true,
      })),
    ],
    confirmLabel: "Sign in",
    check: (values) => (values.token.trim() ? null : "Enter a token."),
  }).then((values) => {
    prompt = null;
    if (values === null) {
      declined = true;
    } else {
      sessionStorage.setItem(TOKEN_KEY, values.token.trim());
    }
    changed();
    return values !== null;
  });
  return prompt;
}

// --- requests ---------------------------------------------------------------------------

/**
 * fetch() against the service with the token; a 401 asks for a token and tries again (the
 * request was refused before anything was done, so sending it again is safe). Returns the
 * Response, whatever its status.
 */
export async function send(path, { method = "GET", body, headers = {}, signal } = {}) {
  for (;;) {
    const sent = new Headers(headers);
    if (!sent.has("Accept")) sent.set("Accept", "application/json");
    if (body !== undefined) sent.set("Content-Type", "application/json");
    const held = token();
    if (held !== null) sent.set("Authorization", `Bearer ${held}`);
    const response = await fetch(root + path, {
      method,
      headers: sent,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
    });
    if (response.status !== 401) return response;
    const reason = held === null
      ? "This service needs a token."
      : "The token was refused (expired or revoked?). Enter another.";
    if (held !== null && token() === held) sessionStorage.removeItem(TOKEN_KEY);
    if (declined || !(await signIn(reason))) throw new ApiError(401, await problemOf(response));
  }
}

async function problemOf(response) {
  try {
    return await response.json();
  } catch {
    return { detail: `the server answered ${response.status}` };
  }
}

/** The JSON body of a 2xx answer; anything else raises ApiError. */
export async function call(path, options = {}) {
  const response = await send(path, options);
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  return response.status === 204 ? null : response.json();
}

export function get(path, params = {}, { signal } = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(name, value);
  }
  const text = query.toString();
  return call(text ? `${path}?${text}` : path, { signal });
}

export function post(path, body, { signal } = {}) {
  return call(path, { method: "POST", body, signal });
}

// --- paths ------------------------------------------------------------------------------

const seg = encodeURIComponent;

export const paths = {
  operation: (id) => `/v1/operations/${seg(id)}`,
  events: (id) => `/v1/operations/${seg(id)}/events`,
  cancel: (id) => `/v1/operations/${seg(id)}/cancel`,
  retry: (id) => `/v1/operations/${seg(id)}/retry`,
  release: (unit, env) => `/v1/deployment-units/${seg(unit)}/environments/${seg(env)}`,
  componentStatus: (unit, env, component) =>
    `/v1/deployment-units/${seg(unit)}/environments/${seg(env)}/components/${seg(component)}/status`,
};

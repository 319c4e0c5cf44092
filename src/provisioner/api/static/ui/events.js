// Following an operation's audit trail live. One request asks GET /v1/operations/{id}/events
// for `text/event-stream`: a server that streams answers with Server-Sent Events (each event's
// id its sequence number; a final event when the operation ends), read here with fetch so that
// the token goes in the Authorization header; a server that does not answers the JSON page of
// events, and the client then polls `?after=<last id>` every second.
import { ApiError, paths, send } from "./api.js";
import { ENDED_OPERATION } from "./dom.js";
import { readEventStream } from "./sse.js";

const POLL_MS = 1000;
const PAGE = 1000; // the events endpoint's default limit
const END_EVENTS = new Set(["end", "done", "final", "finished", "operation-ended"]);

/**
 * Follow the events of `operationId` until it ends or `signal` aborts: `onEvents(list)` gets
 * them in order (each once), `onMode(mode, error?)` says how ("stream", "polling", "retrying",
 * "ended"), `onEnd()` is called once the operation has ended.
 */
export function followEvents(operationId, { onEvents, onMode = () => {}, onEnd = () => {}, signal }) {
  const follower = { lastId: 0, ended: false, retryMs: POLL_MS };
  run(operationId, follower, { onEvents, onMode, signal }).then(() => {
    if (follower.ended && !signal.aborted) {
      onMode("ended");
      onEnd();
    }
  });
}

async function run(operationId, follower, { onEvents, onMode, signal }) {
  let backoff = POLL_MS;
  while (!signal.aborted && !follower.ended) {
    const stop = new AbortController(); // ends a stream after its final event
    const abort = () => stop.abort();
    signal.addEventListener("abort", abort);
    try {
      const response = await send(`${paths.events(operationId)}?after=${follower.lastId}`, {
        headers: {
          Accept: "text/event-stream, application/json;q=0.5",
          ...(follower.lastId ? { "Last-Event-ID": String(follower.lastId) } : {}),
        },
        signal: stop.signal,
      });
      if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => ({})));
      const streamed = (response.headers.get("Content-Type") ?? "").startsWith("text/event-stream");
      let wait;
      if (streamed) {
        onMode("stream");
        await stream(response, follower, onEvents, stop);
        wait = follower.retryMs; // the stream closed: resume from the last id
      } else {
        onMode("polling");
        const { items = [] } = await response.json();
        accept(items, follower, onEvents);
        wait = items.length >= PAGE ? 0 : POLL_MS;
      }
      backoff = POLL_MS;
      if (!follower.ended) await sleep(wait, signal);
    } catch (error) {
      if (signal.aborted || (follower.ended && error.name === "AbortError")) return;
      onMode("retrying", error);
      if (error instanceof ApiError && error.status === 401) return; // signed out: stop
      await sleep(backoff, signal);
      backoff = Math.min(backoff * 2, 10_000);
    } finally {
      signal.removeEventListener("abort", abort);
    }
  }
}

async function stream(response, follower, onEvents, stop) {
  await readEventStream(response.body, {
    onRetry: (ms) => { follower.retryMs = ms; },
    onEvent: ({ type, data, id }) => {
      let parsed = null;
      try {
        parsed = data ? JSON.parse(data) : null;
      } catch {
        parsed = null; // a keep-alive or a text the client does not read
      }
      if (parsed && typeof parsed.newStatus === "string") {
        if (parsed.id === undefined && /^\d+$/.test(id ?? "")) parsed.id = Number(id);
        accept([parsed], follower, onEvents);
      } else if (/^\d+$/.test(id ?? "")) {
        follower.lastId = Math.max(follower.lastId, Number(id));
      }
      if (END_EVENTS.has(type) || (parsed && ENDED_OPERATION.has(parsed.status))) {
        follower.ended = true;
      }
      if (follower.ended) stop.abort();
    },
  });
}

/** Hand on the events not seen yet; the operation's own final transition ends the follow. */
function accept(items, follower, onEvents) {
  const fresh = items.filter((event) => !(event.id <= follower.lastId));
  if (fresh.length === 0) return;
  for (const event of fresh) {
    if (Number.isFinite(event.id)) follower.lastId = Math.max(follower.lastId, event.id);
    if (event.componentId == null && ENDED_OPERATION.has(event.newStatus)) follower.ended = true;
  }
  onEvents(fresh);
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal.aborted || ms <= 0) {
      resolve();
      return;
    }
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done);
  });
}

// A reader of text/event-stream bodies (the Server-Sent Events format of the HTML standard,
// section 9.2), for a stream opened with fetch(): unlike EventSource, fetch can send the
// Authorization header, so the token never has to travel in a URL.

const LINE = /\r\n|\r|\n/;

/**
 * Read `body` (a ReadableStream of bytes) to its end, calling `onEvent({type, data, id})` for
 * each complete event and `onRetry(ms)` for each retry field. An event cut off by the end of
 * the stream is dropped, as EventSource does.
 */
export async function readEventStream(body, { onEvent, onRetry = () => {} }) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const state = { data: [], type: "", id: null };
  let pending = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      pending += value;
      // A chunk may end between the \r and the \n of one line break: keep a trailing \r
      // until the next chunk says which it is.
      const complete = pending.endsWith("\r") ? pending.slice(0, -1) : pending;
      const lines = complete.split(LINE);
      pending = lines.pop() + pending.slice(complete.length);
      for (const line of lines) readLine(line, state, onEvent, onRetry);
    }
  } finally {
    reader.releaseLock();
  }
}

function readLine(line, state, onEvent, onRetry) {
  if (line === "") {
    if (state.data.length > 0) {
      onEvent({ type: state.type || "message", data: state.data.join("\n"), id: state.id });
    }
    state.data = [];
    state.type = "";
    return;
  }
  if (line.startsWith(":")) return; // a comment: keep-alive
  const colon = line.indexOf(":");
  const field = colon === -1 ? line : line.slice(0, colon);
  let value = colon === -1 ? "" : line.slice(colon + 1);
  if (value.startsWith(" ")) value = value.slice(1);
  if (field === "data") state.data.push(value);
  else if (field === "event") state.type = value;
  else if (field === "id" && !value.includes("\0")) state.id = value;
  else if (field === "retry" && /^\d+$/.test(value)) onRetry(Number(value));
}

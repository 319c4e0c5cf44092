// What the dashboard can change: cancel and retry an operation, and (admin) repair a CORRUPT
// component by hand. Each asks for confirmation first. The server decides who may: a 403
// names the scope the token lacks, and the button then says so instead of offering itself.
import { ApiError, onSessionChange, paths, post } from "./api.js";
import { confirmAction } from "./dialog.js";
import { h, notify, shortName } from "./dom.js";

// Actions this session's token was refused (403), by kind and environment, with the reason:
// their buttons stay off, and say why, until the token changes.
const refusals = new Map();
onSessionChange(() => refusals.clear());

/**
 * A button for one kind of action ("cancel", "retry", "repair") in `environment`: off, with
 * the server's reason, when this token was refused it; `run(button)` does the action.
 */
export function actionButton({ kind, environment, label, ariaLabel, key, run, primary = false }) {
  const refused = refusals.get(`${kind}|${environment}`);
  const button = h("button", {
    type: "button",
    class: primary ? "primary" : null,
    "data-key": key,
    "data-action": kind,
    "aria-label": ariaLabel,
    disabled: refused !== undefined,
    title: refused,
  }, refused === undefined ? label : `${label} (not allowed)`);
  button.addEventListener("click", () => run(button));
  return button;
}

/** Cancel `operation`; resolves to the operation as answered, or null. */
export async function cancelOperation(operation, button) {
  const confirmed = await confirmAction({
    title: "Cancel this operation?",
    text: `Waiting tasks of ${operation.type.toLowerCase()} ${operation.deploymentUnitId} in `
      + `${operation.environment} will not start, and calls in flight are cut: their `
      + "components become CORRUPT.",
    confirmLabel: "Cancel operation",
    danger: true,
  });
  if (!confirmed) return null;
  return act(["cancel", operation.environment], button, () => post(paths.cancel(operation.id)),
    "Cancel requested.");
}

/** Retry what did not succeed; resolves to the new operation, or null. */
export async function retryOperation(operation, button) {
  const confirmed = await confirmAction({
    title: "Retry this operation?",
    text: "A new operation runs again the tasks that did not succeed (failed, skipped, "
      + "cancelled).",
    confirmLabel: "Retry",
  });
  if (!confirmed) return null;
  return act(["retry", operation.environment], button, () => post(paths.retry(operation.id)),
    "Retry started.");
}

/** Record by hand what a CORRUPT component really is (admin); resolves to true if done. */
export async function repairComponent({ unitId, environment, componentId }, button) {
  const values = await confirmAction({
    title: `Mark ${shortName(componentId, unitId)} as deployed or not deployed?`,
    text: `Record ${componentId} in ${environment} as what it really is, after checking the `
      + "platform by hand. Nothing is sent to its Tech Adapter; an OVERRIDE operation keeps "
      + "your name and reason, and the release's status follows.",
    fields: [
      h("fieldset", {},
        h("legend", {}, "It is now"),
        h("label", { class: "choice" },
          h("input", { type: "radio", name: "status", value: "DEPLOYED", required: true }),
          " Mark as DEPLOYED"),
        h("label", { class: "choice" },
          h("input", { type: "radio", name: "status", value: "NOT_DEPLOYED" }),
          " Mark as NOT_DEPLOYED")),
      h("label", {}, "Reason (kept in the audit trail)",
        h("textarea", { name: "reason", rows: 2, required: true, maxlength: 1000 })),
    ],
    confirmLabel: "Repair",
    danger: true,
  });
  if (!values) return false;
  const done = await act(
    ["repair", environment],
    button,
    () => post(paths.componentStatus(unitId, environment, componentId), {
      status: values.status,
      reason: values.reason,
    }),
    `${shortName(componentId, unitId)} recorded as ${values.status}.`,
  );
  return done !== null;
}

async function act([kind, environment], button, request, success) {
  if (button) button.disabled = true;
  try {
    const answer = await request();
    notify(success);
    return answer ?? {};
  } catch (error) {
    if (error instanceof ApiError && error.status === 403) {
      refusals.set(`${kind}|${environment}`, error.message);
    }
    explain(error, button);
    return null;
  } finally {
    if (button && !button.dataset.refused) button.disabled = false;
  }
}

function explain(error, button) {
  if (!(error instanceof ApiError)) {
    notify(`The request failed: ${error.message}`, { error: true });
    return;
  }
  if (error.status === 403) {
    // Not this token's to do: say why on the button itself, and keep it off.
    if (button) {
      button.dataset.refused = "true";
      button.disabled = true;
      button.title = error.message;
      button.textContent = `${button.textContent} (not allowed)`;
    }
    notify(`Not allowed: ${error.message}`, { error: true });
  } else if (error.endpointMissing) {
    notify("This action is not available on this server (it does not offer the endpoint).",
      { error: true });
  } else {
    notify(`Refused (${error.status}): ${error.message}`, { error: true });
  }
}

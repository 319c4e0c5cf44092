// #/operations/{id}: an operation's DAG (the system step, the components, their
// dependencies), each node coloured by its status and updated live from the event stream; the
// selected node's adapter, timings, error, logs and public info; the policy warnings, the plan,
// the audit trail; cancel and retry. An ACL update has one task (its component's updateacl);
// an override none (an operator marked a CORRUPT component by hand, with a reason).
import { actionButton, cancelOperation, retryOperation } from "../actions.js";
import { get, paths } from "../api.js";
import { drawGraph, MAX_DRAWN } from "../dag.js";
import {
  ACTIVE_OPERATION, badge, facts, formatDuration, h, json, operationHref, operationName, releaseHref,
  replaceContent, replaceContentIfChanged, shortName, timeCell,
} from "../dom.js";
import { followEvents } from "../events.js";
import { every } from "../live.js";
import { liveIndicator, loadError, table } from "./common.js";
import { repairButton } from "./release.js";

const TASK_STATUSES = ["WAITING", "RUNNING", "SUCCEEDED", "FAILED", "SKIPPED", "CANCELLED"];
const HISTORY_SHOWN = 200;
// What may be retried: the server refuses a retry of an ACL update (ask again) or an override.
const RETRIED = new Set(["DEPLOY", "UNDEPLOY"]);
// Operations about one component: it is named, rather than counted.
const ONE_COMPONENT = new Set(["UPDATE_ACL", "OVERRIDE"]);
const MODES = {
  stream: "Live: event stream",
  polling: "Live: polling every second",
  ended: "Ended",
};

export function render(main, { args: [operationId], signal }) {
  const page = {
    id: operationId,
    signal,
    operation: null,
    release: null, // for the components' current status (repair of a CORRUPT one)
    events: [],
    selected: null,
    graph: null,
    live: liveIndicator(),
    parts: {
      title: h("h1", { tabindex: -1, class: "id" }, "Operation"),
      facts: h("div", {}),
      actions: h("div", { class: "actions" }),
      warnings: h("div", {}),
      dag: h("div", { class: "dag-scroll", tabindex: -1 }),
      details: h("div", { class: "details-body" }),
      plan: h("div", {}),
      history: h("div", {}),
    },
  };
  const { parts } = page;
  main.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/operations" }, "Operations"), " / ",
      h("span", { class: "id" }, operationId)),
    parts.title, page.live.element, parts.facts, parts.actions, parts.warnings,
    h("div", { class: "operation-layout" },
      h("section", { class: "graph", "aria-labelledby": "graph-title" },
        h("h2", { id: "graph-title" }, "Tasks"), legend(), parts.dag),
      h("aside", { class: "details", "aria-labelledby": "details-title" },
        h("h2", { id: "details-title" }, "Task"), parts.details)),
    h("section", { "aria-labelledby": "plan-title" }, h("h2", { id: "plan-title" }, "Plan"),
      parts.plan),
    h("section", { "aria-labelledby": "history-title" },
      h("h2", { id: "history-title" }, "History"), parts.history));
  start(page);
}

async function start(page) {
  try {
    page.operation = await get(paths.operation(page.id), {}, { signal: page.signal });
  } catch (error) {
    if (!page.signal.aborted) replaceContent(page.parts.facts, loadError(error, () => start(page)));
    return;
  }
  renderAll(page);
  loadRelease(page);
  const refetch = coalesced(() => reload(page));
  const renderSoon = batched(() => renderAll(page));
  followEvents(page.id, {
    signal: page.signal,
    onEvents: (events) => {
      page.events.push(...events);
      applyEvents(page, events);
      renderSoon();
      refetch();
    },
    onMode: (mode, error) => {
      if (mode === "retrying") page.live.failed(error);
      else page.live.ok(MODES[mode]);
    },
    onEnd: () => reload(page),
  });
  every(1000, () => tickDurations(page), page.signal);
}

/** Read the operation again (and the release: its components' status moves with the tasks). */
async function reload(page) {
  try {
    const [operation] = await Promise.all([
      get(paths.operation(page.id), {}, { signal: page.signal }),
      loadRelease(page, { render: false }),
    ]);
    page.operation = operation;
    renderAll(page);
  } catch (error) {
    if (!page.signal.aborted) page.live.failed(error);
  }
}

async function loadRelease(page, { render = true } = {}) {
  const { deploymentUnitId, environment } = page.operation;
  try {
    page.release = await get(paths.release(deploymentUnitId, environment), {},
      { signal: page.signal });
    if (render) renderDetails(page);
  } catch {
    // without it the details only lack the component's current status and its repair
  }
}

/** Run `action` after the events of a burst: one read at a time, and one more if asked meanwhile. */
function coalesced(action) {
  let running = false;
  let again = false;
  return async function trigger() {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await action();
    } finally {
      running = false;
      if (again) {
        again = false;
        trigger();
      }
    }
  };
}

/** Run `action` once for all the calls made within `ms` (a stream delivers events one by one:
 * replaying a long history must not redraw the page for each). */
function batched(action, ms = 50) {
  let timer = null;
  return () => {
    timer ??= setTimeout(() => {
      timer = null;
      action();
    }, ms);
  };
}

/** Move statuses on at once from the events; the read that follows fills in the rest. */
function applyEvents(page, events) {
  const tasks = page.taskIndex;
  for (const event of events) {
    if (event.componentId == null) {
      if (event.detail?.cancelRequested) page.operation.cancelRequested = true;
      if (event.newStatus) page.operation.status = event.newStatus;
    } else if (tasks.has(event.componentId) && TASK_STATUSES.includes(event.newStatus)) {
      tasks.get(event.componentId).status = event.newStatus;
    }
  }
}

function renderAll(page) {
  page.taskIndex = new Map(page.operation.tasks.map((task) => [task.componentId, task]));
  renderFacts(page);
  renderActions(page);
  renderWarnings(page);
  renderGraph(page);
  renderDetails(page);
  renderPlan(page);
  renderHistory(page);
}

// --- the header -------------------------------------------------------------------------

function renderFacts(page) {
  const op = page.operation;
  const name = operationName(op.type);
  page.parts.title.textContent = `${name[0].toUpperCase()}${name.slice(1)} `
    + `${op.deploymentUnitId}`;
  const about = ONE_COMPONENT.has(op.type) && op.components?.length;
  const pairs = [
    ["Status", badge(op.status, { id: "operation-status" })],
    ["Release", h("a", { href: releaseHref(op.deploymentUnitId, op.environment) },
      op.environment)],
    ["Version", op.version ?? "—"],
    op.requestedBy ? ["Requested by", op.requestedBy] : null,
    about ? ["Component", h("span", { class: "id", id: "operation-component" },
      op.components.join(", "))] : null,
    op.components && !about ? ["Components asked for", op.components.length] : null,
    op.refs ? ["Access granted to", h("span", { id: "operation-refs" }, op.refs.join(", "))]
      : null,
    op.reason ? ["Reason", h("span", { id: "operation-reason" }, op.reason)] : null,
    op.removeData ? ["Remove data", "yes"] : null,
    op.retryOf ? ["Retry of", h("a", { href: operationHref(op.retryOf) }, op.retryOf)] : null,
    ["Created", timeCell(op.createdAt)],
    ["Started", timeCell(op.startedAt)],
    ["Finished", timeCell(op.finishedAt)],
    ["Duration", h("span", { "data-since": op.finishedAt ? null : op.startedAt },
      formatDuration(op.startedAt, op.finishedAt))],
  ];
  replaceContent(page.parts.facts, facts(pairs),
    op.error ? h("p", { class: "panel error" }, op.error) : null);
}

function renderActions(page) {
  const op = page.operation;
  const buttons = [];
  if (ACTIVE_OPERATION.has(op.status)) {
    if (op.cancelRequested) {
      buttons.push(h("span", { class: "hint" }, "Cancel requested…"));
    } else {
      buttons.push(actionButton({
        kind: "cancel", environment: op.environment, label: "Cancel", key: "action:cancel",
        run: async (button) => {
          const answered = await cancelOperation(op, button);
          if (answered && answered.id) page.operation = answered;
          renderAll(page); // also when refused: the button may have been drawn again meanwhile
        },
      }));
    }
  }
  if (RETRIED.has(op.type) && (op.status === "FAILED" || op.status === "CANCELLED")) {
    buttons.push(actionButton({
      kind: "retry", environment: op.environment, label: "Retry", key: "action:retry",
      primary: true,
      run: async (button) => {
        const created = await retryOperation(op, button);
        if (created && created.id) location.hash = operationHref(created.id);
        else renderActions(page);
      },
    }));
  }
  // Kept when unchanged: the buttons in place keep the clicks under way (their handlers act
  // on the same operation).
  replaceContentIfChanged(page.parts.actions, buttons);
}

function renderWarnings(page) {
  const warnings = page.operation.warnings ?? [];
  replaceContent(page.parts.warnings, warnings.length === 0 ? null
    : h("section", { class: "panel warning", "aria-labelledby": "warnings-title" },
      h("h2", { id: "warnings-title" }, `Warnings (${warnings.length})`),
      h("ul", {}, warnings.map((w) => h("li", {}, h("code", {}, w.path || "(document)"), ": ",
        w.message)))));
}

// --- the graph and the selected task ---------------------------------------------------

function renderGraph(page) {
  const { tasks, deploymentUnitId } = page.operation;
  if (page.graph) {
    page.graph.update(tasks);
    return;
  }
  if (tasks.length === 0) {
    page.graph = { update() {}, select() {} };
    replaceContent(page.parts.dag, h("p", { class: "hint", id: "no-tasks" },
      page.operation.type === "OVERRIDE"
        ? "An override runs no task: an operator recorded the component's status by hand "
          + "(nothing was sent to a Tech Adapter). The history below says what changed."
        : "This operation has no tasks."));
    return;
  }
  if (tasks.length > MAX_DRAWN) {
    page.graph = { update() {}, select() {} };
    replaceContent(page.parts.dag, h("p", { class: "hint" },
      `${tasks.length} tasks are too many to draw: the plan below lists them.`));
    return;
  }
  page.graph = drawGraph(page.parts.dag, tasks, {
    unitId: deploymentUnitId,
    onSelect: (componentId) => select(page, componentId),
  });
}

function select(page, componentId) {
  page.selected = componentId;
  page.graph.select(componentId);
  renderDetails(page);
}

function renderDetails(page) {
  const op = page.operation;
  const task = op.tasks.find((t) => t.componentId === page.selected);
  if (!task && op.tasks.length === 0) {
    replaceContent(page.parts.details, h("p", { class: "hint" }, "No task to show."));
    return;
  }
  if (!task) {
    replaceContent(page.parts.details, h("p", { class: "hint" },
      "Select a task (click it, or Tab to it and press Enter) to see its Tech Adapter, "
      + "timings, error, logs and info."));
    return;
  }
  const component = page.release?.components.find((c) => c.componentId === task.componentId);
  const adapter = task.infrastructureTemplateId ?? component?.infrastructureTemplateId;
  const isSystem = task.componentId === op.deploymentUnitId;
  replaceContent(page.parts.details,
    h("h3", {}, shortName(task.componentId, op.deploymentUnitId)),
    h("p", { class: "id" }, task.componentId),
    facts([
      ["Status", badge(task.status, { id: "task-status" })],
      ["Action", task.action],
      ["Tech Adapter", h("span", { class: "id", id: "task-adapter" },
        adapter ?? (isSystem ? "none (the unit is recorded without a call)" : "—"))],
      ["Depends on", task.dependsOn.length
        ? task.dependsOn.map((id) => shortName(id, op.deploymentUnitId)).join(", ") : "—"],
      ["Attempts", task.attempts],
      ["Started", timeCell(task.startedAt)],
      ["Finished", timeCell(task.finishedAt)],
      ["Duration", h("span", { "data-since": task.finishedAt ? null : task.startedAt },
        formatDuration(task.startedAt, task.finishedAt))],
      component ? ["Component now", badge(component.status)] : null,
    ], { single: true }),
    component?.status === "CORRUPT" && page.release
      ? h("p", {}, repairButton(page.release, task.componentId, () => reload(page))) : null,
    task.error ? errorBox(task.error) : null,
    task.logs?.length ? logsTable(task.logs) : null,
    task.info?.publicInfo ? h("details", { open: true }, h("summary", {}, "Public info"),
      json(task.info.publicInfo)) : null);
}

function errorBox(error) {
  const more = error.moreInfo ?? {};
  const list = (title, items) => (Array.isArray(items) && items.length
    ? [h("h4", {}, title), h("ul", {}, items.map((item) => h("li", {},
      typeof item === "string" ? item : JSON.stringify(item))))]
    : null);
  return h("div", { class: "panel error", id: "task-error" },
    h("h4", {}, "Error"),
    h("p", {}, error.message ?? JSON.stringify(error)),
    error.statusCode ? h("p", {}, `Status code ${error.statusCode}`) : null,
    error.userMessage && error.userMessage !== error.message
      ? h("p", {}, "The adapter says: ", error.userMessage) : null,
    list("Problems", more.problems),
    list("Solutions", more.solutions));
}

function logsTable(logs) {
  return h("details", { open: true }, h("summary", {}, `Logs (${logs.length})`),
    table("Logs", ["Time", "Level", "Message"], logs.map((entry) => [
      entry.timestamp ? timeCell(entry.timestamp) : "—",
      entry.level ?? "—",
      entry.message ?? JSON.stringify(entry),
    ])));
}

function legend() {
  return h("ul", { class: "legend", "aria-label": "Status colours" },
    TASK_STATUSES.map((status) => h("li", {}, badge(status))));
}

// --- the plan and the history -----------------------------------------------------------

function renderPlan(page) {
  const { tasks, deploymentUnitId } = page.operation;
  replaceContent(page.parts.plan, table("Plan",
    ["#", "Component", "Action", "Status", "Tech Adapter", "Depends on", "Attempts", "Duration"],
    tasks.map((task, index) => [
      index + 1,
      h("button", {
        type: "button", class: "link id", "data-key": `plan:${task.componentId}`,
        title: task.componentId, onclick: () => select(page, task.componentId),
      }, shortName(task.componentId, deploymentUnitId)),
      task.action,
      badge(task.status),
      h("span", { class: "id" }, task.infrastructureTemplateId ?? "—"),
      task.dependsOn.map((id) => shortName(id, deploymentUnitId)).join(", ") || "—",
      task.attempts,
      formatDuration(task.startedAt, task.finishedAt),
    ])));
}

function renderHistory(page) {
  const { events } = page;
  const shown = events.slice(-HISTORY_SHOWN);
  const unitId = page.operation.deploymentUnitId;
  replaceContent(page.parts.history,
    events.length > shown.length
      ? h("p", { class: "hint" }, `The last ${shown.length} of ${events.length} events.`) : null,
    table("History", ["Time", "What", "From", "To", "By", "Detail"], shown.map((event) => [
      timeCell(event.at),
      event.componentId == null ? "operation" : shortName(event.componentId, unitId),
      event.oldStatus ?? "—",
      badge(event.newStatus),
      event.principal ?? "—",
      event.detail ? h("code", {}, JSON.stringify(event.detail)) : "",
    ]), { empty: "No events yet." }));
}

function tickDurations(page) {
  for (const element of document.querySelectorAll("[data-since]")) {
    if (element.dataset.since) element.textContent = formatDuration(element.dataset.since, null);
  }
  return Promise.resolve(page);
}

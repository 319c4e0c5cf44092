// #/releases/{unit}/{environment}: one release, its components (with manual repair of a
// CORRUPT one) and its recent operations; refreshed every few seconds.
import { actionButton, repairComponent } from "../actions.js";
import { get, paths } from "../api.js";
import {
  badge, facts, h, json, operationHref, replaceContent, shortName, timeCell,
} from "../dom.js";
import { every, REFRESH_MS } from "../live.js";
import { liveIndicator, loadError, table } from "./common.js";
import { lastOperation } from "./releases.js";
import { OperationHeaders } from "./operations-cache.js";

const RECENT = 20;

export function render(main, { args: [unitId, environment], signal }) {
  const live = liveIndicator();
  const body = h("div", {});
  main.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/releases" }, "Releases"), " / ", environment),
    h("h1", { tabindex: -1, class: "id" }, unitId),
    live.element,
    body);
  const operations = new OperationHeaders();
  let loaded = false;

  async function refresh() {
    try {
      const [release, recent] = await Promise.all([
        get(paths.release(unitId, environment), {}, { signal }),
        get("/v1/operations", { deploymentUnitId: unitId, environment, limit: RECENT }, { signal }),
      ]);
      await operations.load(
        [release.lastOperationId, ...release.components.map((c) => c.lastOperation?.operationId)],
        signal);
      replaceContent(body, ...view(release, recent.items, operations, refresh));
      loaded = true;
      live.ok();
    } catch (error) {
      if (signal.aborted) return;
      if (!loaded) replaceContent(body, loadError(error, refresh));
      live.failed(error);
    }
  }
  every(REFRESH_MS, refresh, signal);
}

function view(release, recent, operations, refresh) {
  return [
    facts([
      ["Status", badge(release.status, { id: "release-status" })],
      ["Environment", release.environment],
      ["Version", release.version ?? "—"],
      ["Last operation", lastOperation(release.lastOperationId, operations)],
      ["Updated", timeCell(release.updatedAt)],
    ]),
    release.info?.publicInfo
      ? h("details", {}, h("summary", {}, "Public info"), json(release.info.publicInfo)) : null,
    h("h2", {}, "Components"),
    componentsTable(release, refresh),
    h("h2", {}, "Recent operations"),
    operationsTable(recent),
  ];
}

function componentsTable(release, refresh) {
  const rows = release.components.map((component) => [
    h("span", { class: "id", title: component.componentId },
      shortName(component.componentId, release.deploymentUnitId)),
    badge(component.status),
    component.version ?? "—",
    h("span", { class: "id" }, component.infrastructureTemplateId ?? "—"),
    component.dependsOn.map((id) => shortName(id, release.deploymentUnitId)).join(", ") || "—",
    component.refs?.length ? component.refs.join(", ") : "—",
    component.lastOperation
      ? h("a", { href: operationHref(component.lastOperation.operationId) },
        `${component.lastOperation.type.toLowerCase()} `, badge(component.lastOperation.status))
      : "—",
    component.status === "CORRUPT" ? repairButton(release, component.componentId, refresh) : "",
  ]);
  return table("Components",
    ["Component", "Status", "Version", "Tech Adapter", "Depends on", "Access", "Last task", ""],
    rows,
    { empty: "No components." });
}

/** A "Repair…" button for a CORRUPT component: mark it deployed or not deployed, with a reason
 * (admin: the server says if the token may). */
export function repairButton(release, componentId, refresh) {
  return actionButton({
    kind: "repair",
    environment: release.environment,
    label: "Repair…",
    ariaLabel: `Repair ${componentId}`,
    key: `repair:${componentId}`,
    run: async (button) => {
      await repairComponent({
        unitId: release.deploymentUnitId, environment: release.environment, componentId,
      }, button);
      refresh(); // done or refused, the table is drawn again with what the server said
    },
  });
}

function operationsTable(items) {
  const rows = items.map((operation) => [
    h("a", { href: operationHref(operation.id), "data-key": `operation:${operation.id}` },
      timeCell(operation.createdAt)),
    operation.type,
    operation.version ?? "—",
    badge(operation.status),
    operation.requestedBy ?? "—",
  ]);
  return table("Recent operations", ["Created", "Type", "Version", "Status", "Requested by"], rows,
    { empty: "No operations." });
}

// #/releases: every deployment unit × environment with its status, version and last
// operation; filtered by environment and status (by the server) and by a part of the unit's
// id (here); refreshed every few seconds.
import { get } from "../api.js";
import {
  badge, h, operationHref, operationName, releaseHref, replaceContent, timeCell,
} from "../dom.js";
import { every, REFRESH_MS } from "../live.js";
import {
  debounce, field, liveIndicator, loadError, readFilters, statusSelect, table, writeFilters,
} from "./common.js";
import { OperationHeaders } from "./operations-cache.js";

export const RELEASE_STATUSES = [
  "DEPLOYED", "PARTIALLY_DEPLOYED", "IN_PROGRESS", "CORRUPT", "NOT_DEPLOYED",
];
const LIMIT = 500; // the most the API lists in one page

export function render(main, { params, signal }) {
  const filters = readFilters(params, ["environment", "status", "q"]);
  const live = liveIndicator();
  const results = h("div", { class: "results", "aria-live": "off" });
  const environments = h("datalist", { id: "environments" });
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter releases" },
    field("Environment", h("input", {
      name: "environment", value: filters.environment, list: "environments", autocomplete: "off",
    })),
    environments,
    field("Status", statusSelect("status", RELEASE_STATUSES, filters.status)),
    field("Unit id contains", h("input", { name: "q", type: "search", value: filters.q })));
  form.addEventListener("submit", (event) => event.preventDefault());
  main.append(h("h1", { tabindex: -1 }, "Releases"), form, live.element, results);

  const operations = new OperationHeaders();
  const seenEnvironments = new Set();
  let generation = 0;
  let loaded = false;

  async function refresh() {
    const mine = ++generation; // a newer refresh (filters changed) wins over a slower one
    try {
      const page = await get("/v1/releases", {
        environment: filters.environment.trim(),
        status: filters.status,
        limit: LIMIT,
      }, { signal });
      const needle = filters.q.trim().toLowerCase();
      const items = page.items.filter(
        (item) => !needle || item.deploymentUnitId.toLowerCase().includes(needle));
      await operations.load(items.map((item) => item.lastOperationId), signal);
      if (mine !== generation) return;
      for (const item of page.items) seenEnvironments.add(item.environment);
      replaceContent(environments,
        [...seenEnvironments].sort().map((environment) => h("option", { value: environment })));
      replaceContent(results,
        releasesTable(items, operations),
        page.nextCursor ? h("p", { class: "hint" },
          `Showing the first ${LIMIT} releases: narrow the filters to see others.`) : null);
      loaded = true;
      live.ok(`${items.length} release${items.length === 1 ? "" : "s"}`);
    } catch (error) {
      if (signal.aborted || mine !== generation) return;
      if (!loaded) replaceContent(results, loadError(error, refresh));
      live.failed(error);
    }
  }

  form.addEventListener("input", debounce(() => {
    Object.assign(filters, Object.fromEntries(new FormData(form).entries()));
    writeFilters("/releases", filters);
    loaded = false;
    refresh();
  }));
  every(REFRESH_MS, refresh, signal);
}

function releasesTable(items, operations) {
  const rows = items.map((item) => [
    h("a", {
      href: releaseHref(item.deploymentUnitId, item.environment),
      "data-key": `release:${item.deploymentUnitId}|${item.environment}`,
      class: "id",
    }, item.deploymentUnitId),
    item.environment,
    badge(item.status),
    item.version ?? "—",
    lastOperation(item.lastOperationId, operations),
    timeCell(item.updatedAt),
  ]);
  return table("Releases",
    ["Deployment unit", "Environment", "Status", "Version", "Last operation", "Updated"],
    rows, { empty: "No release matches." });
}

export function lastOperation(id, operations) {
  if (!id) return "—";
  const operation = operations.get(id);
  const link = h("a", { href: operationHref(id), "data-key": `operation:${id}` },
    operation ? operationName(operation.type) : `operation ${id.slice(0, 8)}…`);
  return operation ? h("span", { class: "inline" }, link, " ", badge(operation.status)) : link;
}

// #/operations: the newest operations first, filtered by status, environment and unit;
// refreshed every few seconds.
import { get } from "../api.js";
import { badge, h, operationHref, releaseHref, replaceContent, timeCell } from "../dom.js";
import { every, REFRESH_MS } from "../live.js";
import {
  debounce, field, liveIndicator, loadError, readFilters, statusSelect, table, writeFilters,
} from "./common.js";

const STATUSES = ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"];
const LIMIT = 100;

export function render(main, { params, signal }) {
  const filters = readFilters(params, ["deploymentUnitId", "environment", "status"]);
  const live = liveIndicator();
  const results = h("div", { class: "results" });
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter operations" },
    field("Deployment unit", h("input", {
      name: "deploymentUnitId", value: filters.deploymentUnitId, autocomplete: "off",
    })),
    field("Environment", h("input", {
      name: "environment", value: filters.environment, autocomplete: "off",
    })),
    field("Status", statusSelect("status", STATUSES, filters.status)));
  form.addEventListener("submit", (event) => event.preventDefault());
  main.append(h("h1", { tabindex: -1 }, "Operations"), form, live.element, results);
  let generation = 0;
  let loaded = false;

  async function refresh() {
    const mine = ++generation;
    try {
      const page = await get("/v1/operations", {
        deploymentUnitId: filters.deploymentUnitId.trim(),
        environment: filters.environment.trim(),
        status: filters.status,
        limit: LIMIT,
      }, { signal });
      if (mine !== generation) return;
      replaceContent(results, operationsTable(page.items),
        page.nextCursor ? h("p", { class: "hint" },
          `The newest ${LIMIT}: narrow the filters to see older ones.`) : null);
      loaded = true;
      live.ok();
    } catch (error) {
      if (signal.aborted || mine !== generation) return;
      if (!loaded) replaceContent(results, loadError(error, refresh));
      live.failed(error);
    }
  }

  form.addEventListener("input", debounce(() => {
    Object.assign(filters, Object.fromEntries(new FormData(form).entries()));
    writeFilters("/operations", filters);
    loaded = false;
    refresh();
  }));
  every(REFRESH_MS, refresh, signal);
}

function operationsTable(items) {
  return table("Operations",
    ["Created", "Type", "Deployment unit", "Environment", "Version", "Status", "Requested by"],
    items.map((operation) => [
      h("a", { href: operationHref(operation.id), "data-key": `operation:${operation.id}` },
        timeCell(operation.createdAt)),
      operation.type,
      h("a", { href: releaseHref(operation.deploymentUnitId, operation.environment), class: "id" },
        operation.deploymentUnitId),
      operation.environment,
      operation.version ?? "—",
      badge(operation.status),
      operation.requestedBy ?? "—",
    ]),
    { empty: "No operation matches." });
}

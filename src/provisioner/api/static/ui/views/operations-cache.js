// Operation headers by id, for the lists that show "last operation": the newest operations
// come in one listing per refresh; an older one is read once (an ended operation never
// changes again, so it is kept).
import { get, paths } from "../api.js";
import { ENDED_OPERATION } from "../dom.js";

const NEWEST = 100;
const LOOKUPS_PER_REFRESH = 8;

export class OperationHeaders {
  constructor() {
    this.byId = new Map();
  }

  /** Make sure the operations `ids` are known (as far as one refresh allows). */
  async load(ids, signal) {
    const page = await get("/v1/operations", { limit: NEWEST }, { signal });
    const listed = new Set();
    for (const operation of page.items) {
      this.byId.set(operation.id, operation);
      listed.add(operation.id);
    }
    const missing = [...new Set(ids)].filter((id) => id && !listed.has(id) && !this.ended(id));
    await Promise.all(missing.slice(0, LOOKUPS_PER_REFRESH).map(async (id) => {
      try {
        const { tasks: _, ...header } = await get(paths.operation(id), {}, { signal });
        this.byId.set(id, header);
      } catch {
        // shown as a bare link; tried again on the next refresh
      }
    }));
  }

  ended(id) {
    const operation = this.byId.get(id);
    return operation !== undefined && ENDED_OPERATION.has(operation.status);
  }

  get(id) {
    return this.byId.get(id);
  }
}

// An operation's tasks drawn as a graph: dagre (vendored) places the nodes and routes the
// edges, this module draws them as SVG. A node is a focusable button coloured by its status
// (and labelled with it); updates change nodes in place, the layout is computed once.
import dagre from "../vendor/dagre/dagre.esm.js";
import { shortName, statusLabel, svg } from "./dom.js";

const WIDTH = 196;
const HEIGHT = 54;
const NAME_CHARS = 24;
/** Beyond this many tasks the graph is not drawn (dagre would take seconds): the plan lists them. */
export const MAX_DRAWN = 400;

/**
 * Draw `tasks` (an operation's, each {componentId, status, action, dependsOn}) in `container`.
 * `onSelect(componentId)` is called on click, Enter or Space. Returns {update(tasks), select(id)}.
 */
export function drawGraph(container, tasks, { unitId, onSelect }) {
  const graph = layout(tasks);
  const { width, height } = graph.graph();
  const picture = svg("svg", {
    class: "dag",
    viewBox: `0 0 ${width} ${height}`,
    role: "group",
    "aria-label": `${tasks.length} tasks and their dependencies`,
  });
  // Shrink to the width available, down to 60%, then scroll (CSSOM: the page's CSP refuses
  // style attributes).
  picture.style.maxWidth = `${width}px`;
  picture.style.minWidth = `${Math.round(width * 0.6)}px`;
  picture.append(arrowHead());
  const edges = svg("g", { class: "edges", "aria-hidden": "true" });
  for (const edge of graph.edges()) {
    const points = graph.edge(edge).points;
    const path = points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
    edges.append(svg("path", {
      class: "edge", d: path, "marker-end": "url(#arrow)", "data-from": edge.v, "data-to": edge.w,
    }));
  }
  picture.append(edges);
  const nodes = new Map();
  const layer = svg("g", { class: "nodes" });
  for (const task of tasks) {
    const place = graph.node(task.componentId);
    const node = drawNode(task, place, unitId, onSelect);
    nodes.set(task.componentId, node);
    layer.append(node);
  }
  picture.append(layer);
  container.replaceChildren(picture);
  return {
    update(latest) {
      for (const task of latest) {
        const node = nodes.get(task.componentId);
        if (node) setStatus(node, task, unitId);
      }
    },
    select(componentId) {
      for (const [id, node] of nodes) node.setAttribute("aria-pressed", String(id === componentId));
    },
  };
}

function layout(tasks) {
  const graph = new dagre.graphlib.Graph();
  graph.setGraph({ rankdir: "LR", nodesep: 16, ranksep: 56, marginx: 12, marginy: 12 });
  graph.setDefaultEdgeLabel(() => ({}));
  const ids = new Set(tasks.map((task) => task.componentId));
  for (const task of tasks) graph.setNode(task.componentId, { width: WIDTH, height: HEIGHT });
  for (const task of tasks) {
    for (const dependency of task.dependsOn ?? []) {
      if (ids.has(dependency)) graph.setEdge(dependency, task.componentId);
    }
  }
  dagre.layout(graph);
  return graph;
}

function drawNode(task, place, unitId, onSelect) {
  const name = shortName(task.componentId, unitId);
  const node = svg("g", {
    class: task.componentId === unitId ? "node system" : "node",
    transform: `translate(${(place.x - WIDTH / 2).toFixed(1)},${(place.y - HEIGHT / 2).toFixed(1)})`,
    tabindex: 0,
    role: "button",
    "aria-pressed": "false",
    "data-component-id": task.componentId,
    "data-key": `node:${task.componentId}`,
  },
  svg("title", {}, task.componentId),
  svg("rect", { class: "node-box", width: WIDTH, height: HEIGHT, rx: 8 }),
  svg("rect", { class: "node-band", width: 7, height: HEIGHT, rx: 3 }),
  svg("text", { class: "node-name", x: 16, y: 22 },
    name.length > NAME_CHARS ? `${name.slice(0, NAME_CHARS - 1)}…` : name),
  svg("text", { class: "node-status", x: 16, y: 42 }));
  setStatus(node, task, unitId);
  node.addEventListener("click", () => onSelect(task.componentId));
  node.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      onSelect(task.componentId);
    }
  });
  return node;
}

function setStatus(node, task, unitId) {
  if (node.dataset.status === task.status) return;
  node.dataset.status = task.status;
  const action = task.action === "UNPROVISION" ? "unprovision" : "provision";
  node.querySelector(".node-status").textContent = `${statusLabel(task.status)} · ${action}`;
  node.setAttribute("aria-label", `${shortName(task.componentId, unitId)}: ${task.status}, ${action}`);
}

function arrowHead() {
  return svg("defs", {},
    svg("marker", {
      id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7,
      orient: "auto-start-reverse",
    }, svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" })));
}

// jobchain console, the model page: draws the model's graph (laid out by the vendored dagre,
// vendor/dagre.min.js, at the levels the server computed) and runs the asset drawer: open it
// on a click, add or delete a dependency in it, then redraw. Uses console.js's FETCH_HEADER,
// localize and refreshLive (loaded before this file).
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const NODE = { padX: 10, stripe: 5, height: 44, maxName: 32 };
const SPACING = { nodesep: 18, ranksep: 70, edgesep: 12 };
const LEVEL_LABEL = 22;  // room above the picture for "level N"
const MIN_SCALE = 0.85;  // no smaller than this (text stays readable): it scrolls instead

function svg(name, attributes = {}, parent = null) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) el.setAttribute(key, value);
  if (parent) parent.appendChild(el);
  return el;
}

function shortTime(epoch) {
  const format = new Intl.DateTimeFormat(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
  });
  return format.format(new Date(epoch * 1000));
}

function stateLine(asset) {
  if (asset.state === "never") return "never refreshed";
  return asset.at ? `${asset.state} · ${shortTime(asset.at)}` : asset.state;
}

function clipped(name) {
  return name.length > NODE.maxName ? `${name.slice(0, NODE.maxName - 1)}…` : name;
}

// The asset's status (FRESH, STALE, MISSING) and LATE / held as small coloured pills after
// its name, from x; returns the room they take.
function pills(link, badges, x) {
  let at = x;
  for (const badge of badges) {
    const pill = svg("g", { class: `pill st-${badge}`, "data-badge": badge }, link);
    const rect = svg("rect", { x: at, y: 7, height: 14, rx: 3, ry: 3 }, pill);
    const text = svg("text", { x: at + 4, y: 17.5 }, pill);
    text.textContent = badge === "HELD" ? "held" : badge;
    const width = Math.ceil(text.getComputedTextLength() + 8);
    rect.setAttribute("width", width);
    at += width + 3;
  }
  return badges.length ? at - x + 3 : 0;
}

// d3's "basis" curve through dagre's edge points: smooth, and it stays inside their hull.
function basisPath(points) {
  const p = points;
  if (p.length < 3) return `M${p[0].x},${p[0].y}L${p[p.length - 1].x},${p[p.length - 1].y}`;
  let d = `M${p[0].x},${p[0].y}L${(5 * p[0].x + p[1].x) / 6},${(5 * p[0].y + p[1].y) / 6}`;
  const bezier = (a, b, c) => {
    d += `C${(2 * a.x + b.x) / 3},${(2 * a.y + b.y) / 3},${(a.x + 2 * b.x) / 3},${(a.y + 2 * b.y) / 3},`;
    d += `${(a.x + 4 * b.x + c.x) / 6},${(a.y + 4 * b.y + c.y) / 6}`;
  };
  for (let i = 2; i < p.length; i += 1) bezier(p[i - 2], p[i - 1], p[i]);
  const last = p[p.length - 1], before = p[p.length - 2];
  bezier(before, last, last);
  return `${d}L${last.x},${last.y}`;
}

function draw(container, data, selected) {
  container.replaceChildren();
  const picture = svg("svg", { class: "graph-svg", focusable: "false" }, container);
  const defs = svg("defs", {}, picture);
  const marker = svg("marker", {
    id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5",
    markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse",
  }, defs);
  svg("path", { d: "M0,0L10,5L0,10z", class: "arrowhead" }, marker);
  const edgeLayer = svg("g", { class: "edges" }, picture);
  const nodeLayer = svg("g", { class: "nodes" }, picture);

  // Each asset drawn once at the origin, measured, then moved where dagre puts it.
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: "LR", ranker: "none", marginx: 4, marginy: 4, ...SPACING });
  g.setDefaultEdgeLabel(() => ({}));
  const nodes = new Map();
  for (const asset of data.assets) {
    const link = svg("a", {
      href: asset.url, class: `asset s-${asset.state}`, id: `node-${asset.id}`,
      "data-asset": asset.id, "data-state": asset.state, "data-level": asset.level,
    }, nodeLayer);
    if (String(asset.id) === selected) link.classList.add("selected");
    if (asset.status) link.setAttribute("data-status", (asset.badges || [asset.status]).join(" "));
    const title = svg("title", {}, link);
    const when = asset.at ? new Date(asset.at * 1000).toISOString().replace(".000Z", "Z") : "";
    const refreshed = asset.state === "never" ? "never refreshed" : `last refresh ${asset.state} ${when}`;
    title.textContent = asset.cause ? `${asset.name}: ${asset.cause}\n${refreshed}` : `${asset.name}: ${refreshed}`;
    const box = svg("rect", { class: "box", rx: "4", ry: "4" }, link);
    const stripe = svg("rect", { class: "stripe", width: NODE.stripe }, link);
    const name = svg("text", { class: "name", x: NODE.stripe + NODE.padX, y: 18 }, link);
    name.textContent = clipped(asset.name);
    const state = svg("text", { class: "state", x: NODE.stripe + NODE.padX, y: 34 }, link);
    state.textContent = stateLine(asset);
    const pillsWidth = pills(link, asset.badges || [], NODE.stripe + NODE.padX + name.getComputedTextLength() + 6);
    const textWidth = Math.max(name.getComputedTextLength() + pillsWidth, state.getComputedTextLength());
    const width = Math.ceil(textWidth + NODE.stripe + 2 * NODE.padX);
    for (const rect of [box, stripe]) rect.setAttribute("height", NODE.height);
    box.setAttribute("width", width);
    nodes.set(String(asset.id), link);
    // dagre doubles every edge's length (room for labels): level n is its rank 2n.
    g.setNode(String(asset.id), { width, height: NODE.height, rank: 2 * asset.level });
  }
  for (const dep of data.dependencies) g.setEdge(String(dep.up), String(dep.down));
  dagre.layout(g);

  // The picture's extent: nodes and every edge point (dagre's own box leaves some out).
  let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
  const grow = (x, y) => {
    minX = Math.min(minX, x); maxX = Math.max(maxX, x);
    minY = Math.min(minY, y); maxY = Math.max(maxY, y);
  };
  const columns = new Map();
  for (const id of g.nodes()) {
    const n = g.node(id);
    grow(n.x - n.width / 2, n.y - n.height / 2);
    grow(n.x + n.width / 2, n.y + n.height / 2);
    nodes.get(id).setAttribute("transform", `translate(${n.x - n.width / 2},${n.y - n.height / 2})`);
    const level = Number(nodes.get(id).dataset.level);
    const column = columns.get(level) || { left: Infinity, right: -Infinity };
    column.left = Math.min(column.left, n.x - n.width / 2);
    column.right = Math.max(column.right, n.x + n.width / 2);
    columns.set(level, column);
  }
  for (const e of g.edges()) {
    const points = g.edge(e).points;
    for (const point of points) grow(point.x, point.y);
    svg("path", {
      class: "edge", d: basisPath(points), "marker-end": "url(#arrow)",
      "data-up": e.v, "data-down": e.w,
    }, edgeLayer);
  }
  for (const [level, column] of columns) {
    const label = svg("text", {
      class: "level", x: (column.left + column.right) / 2, y: minY - 8, "text-anchor": "middle",
    }, picture);
    label.textContent = `level ${level}`;
  }
  const pad = 6;
  const width = maxX - minX + 2 * pad;
  const height = maxY - minY + LEVEL_LABEL + 2 * pad;
  picture.setAttribute("viewBox", `${minX - pad} ${minY - LEVEL_LABEL - pad} ${width} ${height}`);
  const scale = Math.max(MIN_SCALE, Math.min(1, container.clientWidth / width));
  picture.setAttribute("width", Math.round(width * scale));
  picture.setAttribute("height", Math.round(height * scale));
  container.dataset.drawn = String(data.assets.length);
  scrollHint(container);
}

// "Scroll it sideways" while the picture is wider than its box.
function scrollHint(container) {
  const hint = document.getElementById("graph-scrolls");
  const picture = container.querySelector("svg");
  if (hint && picture) hint.hidden = Number(picture.getAttribute("width")) <= container.clientWidth;
}

function modelPage(live) {
  const slot = document.getElementById("drawer-slot");
  const modelUrl = live.dataset.modelUrl;
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const selectedId = () => {
    const drawer = slot.querySelector("[data-asset-id]");
    return drawer ? drawer.dataset.assetId : null;
  };
  let drawnWidth = 0;
  const redraw = () => {
    const container = document.getElementById("graph");
    const source = document.getElementById("graph-data");
    if (container && source && window.dagre) {
      drawnWidth = container.clientWidth;
      draw(container, JSON.parse(source.textContent), selectedId());
    }
  };
  const markSelected = () => {
    for (const el of live.querySelectorAll(".asset.selected")) el.classList.remove("selected");
    const chosen = selectedId();
    const node = chosen && document.getElementById(`node-${chosen}`);
    if (node) node.classList.add("selected");
  };
  const showProblem = (message) => {
    const note = document.createElement("p");
    note.className = "flash flash-error";
    note.setAttribute("role", "alert");
    note.dataset.outcome = "error";
    note.textContent = message;
    const drawer = slot.querySelector(".drawer");
    if (drawer) drawer.querySelector(".heading").after(note);
    else slot.replaceChildren(note);
  };
  const problemOf = async (response) => {
    try {
      return (await response.json()).error.message || `HTTP ${response.status}`;
    } catch (error) {
      return `HTTP ${response.status}`;
    }
  };
  const put = async (response) => {
    const type = response.headers.get("Content-Type") || "";
    if (!type.startsWith("text/html")) {
      showProblem(await problemOf(response));
      return;
    }
    slot.innerHTML = await response.text();
    localize(slot);
    markSelected();
  };
  const open = async (url) => {
    try {
      const response = await fetch(url, {
        headers: { [FETCH_HEADER]: "drawer" }, credentials: "same-origin",
      });
      if (response.redirected || response.status === 401) {
        window.location.href = url;  // logged out: the login page, back here after it
        return;
      }
      await put(response);
      if (response.ok) {
        window.history.replaceState(null, "", url);
        slot.querySelector(".drawer").focus();
      }
    } catch (error) {
      window.location.href = url;  // the page itself works without this script
    }
  };
  const close = () => {
    slot.replaceChildren();
    window.history.replaceState(null, "", modelUrl);
    markSelected();
  };

  document.addEventListener("click", (event) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    const closer = event.target.closest("[data-close-drawer]");
    if (closer) {
      event.preventDefault();
      close();
      return;
    }
    const link = event.target.closest("[data-asset]");
    if (!link) return;
    event.preventDefault();
    open(link.getAttribute("href"));
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && slot.firstElementChild) close();
  });
  // After console.js's confirmation: a form it cancelled has defaultPrevented set.
  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-drawer-form]");
    if (!form || event.defaultPrevented) return;
    event.preventDefault();
    const buttons = [...form.querySelectorAll("button:not(:disabled)")];
    for (const button of buttons) button.disabled = true;
    try {
      const response = await fetch(form.action, {
        method: "POST", body: new FormData(form), credentials: "same-origin",
        headers: { [FETCH_HEADER]: "drawer", "X-CSRF-Token": token },
      });
      await put(response);
      if (response.ok) await refreshLive(live);
    } catch (error) {
      showProblem("The server did not answer; nothing may have changed. Reload the page.");
    } finally {
      for (const button of buttons) button.disabled = false;  // if the form is still shown
    }
  });
  live.addEventListener("console:refreshed", redraw);
  // Drawn again when its box gets narrower or wider (window resized, drawer opened).
  let resizing = 0;
  new ResizeObserver(() => {
    const container = document.getElementById("graph");
    if (!container || container.clientWidth === drawnWidth) return;
    scrollHint(container);  // at once; the picture itself once the resizing stops
    window.clearTimeout(resizing);
    resizing = window.setTimeout(redraw, 100);
  }).observe(live);
  redraw();
}

document.addEventListener("DOMContentLoaded", () => {
  const live = document.getElementById("live");
  if (live && live.dataset.modelUrl) modelPage(live);
});

// zart-nb run progress: header, bar, counts, one canvas cell per child, failures.
// The model holds one character per child in `states` (see STATES); the grid is drawn
// on a canvas, so 10,000 children cost one string and one redraw, not 10,000 nodes.
// Clicks go to Python with model.send(): inspect a child, retry it, cancel the run.

const STATES = [
  ["c", "completed", "#43a047"],
  ["p", "replayed", "#80cbc4"],
  ["r", "running", "#1e88e5"],
  ["y", "retrying", "#fb8c00"],
  ["s", "scheduled", "#cfd8dc"],
  ["f", "failed", "#e53935"],
];
const COLOR = Object.fromEntries(STATES.map(([ch, , color]) => [ch, color]));
const LABEL = Object.fromEntries(STATES.map(([ch, label]) => [ch, label]));
const LIVE = new Set(["pending", "running", "waiting"]);

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function duration(s) {
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(Math.floor(s % 60)).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

function cellSize(n) {
  if (n <= 300) return [14, 2];
  if (n <= 1500) return [9, 1];
  if (n <= 5000) return [6, 1];
  return [4, 1];
}

function render({ model, el }) {
  const root = h("div", "zart-progress");
  const head = h("div", "zp-head");
  const name = h("span", "zp-name");
  const runId = h("span", "zp-id");
  const status = h("span", "zp-status");
  const elapsed = h("span", "zp-elapsed");
  const cancel = h("button", "zp-button zp-cancel", "Cancel run");
  head.append(name, runId, status, elapsed, h("span", "zp-spacer"), cancel);

  const barRow = h("div", "zp-bar-row");
  const bar = h("div", "zp-bar");
  const pct = h("span", "zp-pct");
  const pace = h("span", "zp-pace");
  barRow.append(bar, pct, pace);

  const legend = h("div", "zp-legend");
  const canvas = h("canvas", "zp-grid");
  const hover = h("div", "zp-hover", "\u00a0");
  const failedBox = h("div", "zp-failed");
  const detail = h("div", "zp-detail");
  const message = h("div", "zp-message");
  root.append(head, barRow, legend, canvas, hover, failedBox, detail, message);
  el.append(root);

  let received = performance.now();
  let geometry = { cols: 1, size: 10, gap: 1 };
  let confirmCancel = null;

  function updateHead() {
    const st = model.get("status");
    name.textContent = model.get("run_name") || model.get("run_id");
    runId.textContent = model.get("run_name") && model.get("run_name") !== model.get("run_id")
      ? model.get("run_id") : "";
    status.textContent = st;
    status.className = `zp-status zp-status-${st}`;
    cancel.hidden = !LIVE.has(st);
    root.dataset.status = st;
    root.title = model.get("error") ? `error: ${model.get("error")}` : "";
    tick();
  }

  function tick() {
    let s = model.get("elapsed");
    if (model.get("live") && LIVE.has(model.get("status"))) s += (performance.now() - received) / 1000;
    elapsed.textContent = duration(s);
  }

  function updateBar() {
    const total = model.get("total");
    const counts = model.get("counts") || {};
    const finished = model.get("finished");
    bar.replaceChildren();
    for (const [ch, label, color] of STATES) {
      const n = counts[label] || 0;
      if (!n || !total || ch === "s") continue;
      const seg = h("div", `zp-seg zp-seg-${label}`);
      seg.style.width = `${(100 * n) / total}%`;
      seg.style.background = color;
      seg.title = `${label}: ${n}`;
      bar.append(seg);
    }
    const p = total ? Math.floor((100 * finished) / total) : (model.get("status") === "completed" ? 100 : 0);
    pct.textContent = `${finished} / ${total} \u00b7 ${p}%`;
    root.dataset.total = total;
    root.dataset.finished = finished;
    root.dataset.percent = p;
    legend.replaceChildren();
    for (const [ch, label, color] of STATES) {
      const n = counts[label] || 0;
      const item = h("span", `zp-count zp-count-${label}${n ? "" : " zp-zero"}`);
      const sw = h("span", "zp-swatch");
      sw.style.background = color;
      item.append(sw, h("span", "zp-count-label", label), h("b", "zp-count-n", String(n)));
      item.dataset.state = label;
      item.dataset.count = n;
      legend.append(item);
    }
  }

  // children/s lately and the time left at that rate (measured by the kernel from the
  // snapshots it read, whichever backend runs the children); the average once ended
  function updatePace() {
    const rate = model.get("rate") || 0;
    const eta = model.get("eta");
    root.dataset.rate = rate;
    root.dataset.eta = eta;
    if (rate <= 0) {
      pace.textContent = "";
      return;
    }
    let text = `${rate >= 100 ? Math.round(rate).toLocaleString() : rate.toFixed(1)} children/s`;
    if (eta > 0 && LIVE.has(model.get("status"))) text += ` \u00b7 ~${duration(eta)} left`;
    pace.textContent = text;
    pace.title = "children finished per second over the last 10 s, and the time the rest would take at that rate";
  }

  function drawGrid() {
    const states = model.get("states") || "";
    const n = states.length;
    canvas.hidden = n === 0;
    if (!n) return;
    const [size, gap] = cellSize(n);
    // the content box of the widget (the bar row spans it), not the padded root
    const width = Math.max(200, Math.floor(barRow.clientWidth || el.clientWidth || 600));
    const cols = Math.max(1, Math.floor((width + gap) / (size + gap)));
    const rows = Math.ceil(n / cols);
    const cssW = Math.min(width, cols * (size + gap));
    const cssH = rows * (size + gap);
    const dpr = window.devicePixelRatio || 1;
    canvas.style.width = `${cssW}px`;
    canvas.style.height = `${cssH}px`;
    canvas.width = Math.round(cssW * dpr);
    canvas.height = Math.round(cssH * dpr);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    for (const [ch, , color] of STATES) {  // one fillStyle per state
      ctx.fillStyle = color;
      for (let i = states.indexOf(ch); i !== -1; i = states.indexOf(ch, i + 1)) {
        ctx.fillRect((i % cols) * (size + gap), Math.floor(i / cols) * (size + gap), size, size);
      }
    }
    geometry = { cols, size, gap };
  }

  function indexAt(ev) {
    const r = canvas.getBoundingClientRect();
    const { cols, size, gap } = geometry;
    const col = Math.floor((ev.clientX - r.left) / (size + gap));
    const row = Math.floor((ev.clientY - r.top) / (size + gap));
    const i = row * cols + col;
    return col >= 0 && col < cols && i >= 0 && i < (model.get("states") || "").length ? i : -1;
  }

  canvas.addEventListener("mousemove", (ev) => {
    const i = indexAt(ev);
    const st = model.get("states") || "";
    hover.textContent = i < 0 ? "\u00a0" : `child #${i} \u00b7 ${LABEL[st[i]] || "?"} \u00b7 click for details`;
    canvas.style.cursor = i < 0 ? "default" : "pointer";
  });
  canvas.addEventListener("mouseleave", () => { hover.textContent = "\u00a0"; });
  canvas.addEventListener("click", (ev) => {
    const i = indexAt(ev);
    if (i >= 0) inspect(i);
  });

  function inspect(index) {
    detail.replaceChildren(h("div", "zp-pending", `loading child #${index}\u2026`));
    detail.hidden = false;
    model.send({ type: "inspect", index });
  }

  function updateFailed() {
    const failed = model.get("failed") || [];
    const count = (model.get("counts") || {}).failed || 0;
    failedBox.replaceChildren();
    failedBox.hidden = failed.length === 0;
    if (!failed.length) return;
    failedBox.append(h("div", "zp-section", count > failed.length
      ? `Failed children (first ${failed.length} of ${count})` : `Failed children (${count})`));
    const list = h("ul", "zp-failed-list");
    for (const f of failed) {
      const li = h("li", "zp-failed-item");
      li.append(h("span", "zp-failed-name", f.name), h("span", "zp-failed-error", f.error || "failed"));
      li.title = `attempts: ${f.attempts} \u00b7 click for the traceback`;
      li.addEventListener("click", () => inspect(f.index));
      list.append(li);
    }
    failedBox.append(list);
  }

  function updateDetail() {
    const d = model.get("detail") || {};
    detail.replaceChildren();
    detail.hidden = !d.name;
    if (!d.name) return;
    const top = h("div", "zp-detail-head");
    const close = h("button", "zp-button zp-close", "\u00d7");
    close.title = "close";
    close.addEventListener("click", () => { detail.hidden = true; });
    top.append(h("b", "zp-detail-name", d.name),
      h("span", `zp-status zp-status-${d.status}`, d.status),
      h("span", "zp-detail-attempts", `attempt ${d.attempts} of ${d.max_attempts}`));
    if (d.status === "failed") {
      const retry = h("button", "zp-button zp-retry", "Retry child");
      retry.addEventListener("click", () => {
        retry.disabled = true;
        message.textContent = `retrying ${d.name}\u2026 (the kernel acts when it is not busy with a cell)`;
        model.send({ type: "retry", name: d.name });
      });
      top.append(retry);
    }
    top.append(h("span", "zp-spacer"), close);
    detail.append(top);
    const facts = [];
    if (d.worker) facts.push(`worker ${d.worker}`);
    if (d.started_at) facts.push(`started ${d.started_at.replace("T", " ").slice(0, 19)}`);
    if (d.finished_at) facts.push(`finished ${d.finished_at.replace("T", " ").slice(0, 19)}`);
    if (d.not_before && d.status !== "completed") facts.push(`next try after ${d.not_before.replace("T", " ").slice(0, 19)}`);
    if (facts.length) detail.append(h("div", "zp-detail-facts", facts.join(" \u00b7 ")));
    if (d.error) detail.append(h("div", "zp-detail-error", d.error));
    if (d.traceback) detail.append(h("pre", "zp-traceback", d.traceback));
  }

  cancel.addEventListener("click", () => {
    if (confirmCancel === null) {
      cancel.textContent = "Click again to cancel";
      cancel.classList.add("zp-armed");
      confirmCancel = setTimeout(() => {
        cancel.textContent = "Cancel run";
        cancel.classList.remove("zp-armed");
        confirmCancel = null;
      }, 3000);
      return;
    }
    clearTimeout(confirmCancel);
    confirmCancel = null;
    cancel.disabled = true;
    cancel.textContent = "Cancelling\u2026";
    message.textContent = "cancel sent (the kernel acts when it is not busy with a cell)";
    model.send({ type: "cancel" });
  });

  function all() {
    received = performance.now();
    updateHead();
    updateBar();
    updatePace();
    drawGrid();
    updateFailed();
  }

  const handlers = {
    "change:status": () => { updateHead(); updateBar(); updatePace(); },
    "change:elapsed": () => { received = performance.now(); tick(); },
    "change:live": tick,
    "change:run_name": updateHead,
    "change:error": updateHead,
    "change:counts": updateBar,
    "change:finished": updateBar,
    "change:total": updateBar,
    "change:states": drawGrid,
    "change:failed": updateFailed,
    "change:detail": updateDetail,
    "change:message": () => { message.textContent = model.get("message"); },
    "change:rate": updatePace,
    "change:eta": updatePace,
  };
  for (const [event, fn] of Object.entries(handlers)) model.on(event, fn);

  all();
  updateDetail();
  message.textContent = model.get("message");
  const timer = setInterval(tick, 1000);
  let lastWidth = 0;
  const resize = new ResizeObserver(() => {
    const w = root.clientWidth;
    if (w && Math.abs(w - lastWidth) > 4) { lastWidth = w; drawGrid(); }
  });
  resize.observe(root);
  model.send({ type: "view" });

  return () => {
    clearInterval(timer);
    resize.disconnect();
    if (confirmCancel !== null) clearTimeout(confirmCancel);
    for (const [event, fn] of Object.entries(handlers)) model.off(event, fn);
  };
}

export default { render };

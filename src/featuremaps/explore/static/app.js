// featuremaps explore: the page. Talks only to the server that served it (same origin, no CDN).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const PER_PAGE = 64;
  const S = {
    image: null, layer: "C1", channel: null, cls: "", method: "gradcam", cmap: "viridis", norm: "map",
    sort: "index", page: 0, compare: "", cam: false, opacity: 60, model: "m0", vs: "",
  };
  let info = null, summary = null, summaryB = null, view = null, viewB = null, hoverBusy = false, hoverNext = null;
  let layerTicket = 0, camTicket = 0;  // only the latest request of each kind updates the page

  function status(msg, isError) {
    const f = $("status");
    f.textContent = msg || "";
    f.className = isError ? "error" : "";
  }
  async function api(url, opts) {
    const r = await fetch(url, opts);
    const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
    if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
    return body;
  }
  const q = (o) => new URLSearchParams(Object.entries(o).filter(([, v]) => v !== null && v !== "" && v !== undefined)).toString();
  const enc = encodeURIComponent;
  const imgBase = (id) => `/api/images/${enc(id)}`;
  // a query for model m (default: the one the main view shows); m0 is the server's default and stays implicit
  const mq = (o, m) => q({ ...o, model: (m || S.model) === "m0" ? null : (m || S.model) });
  const modelName = (id) => { const m = info.models.find((x) => x.id === id); return m ? m.name : id; };
  function option(sel, value, text) {
    const o = document.createElement("option");
    o.value = value; o.textContent = text; sel.appendChild(o); return o;
  }
  // a probability as every figure and printed line shows it (featuremaps.pipeline.percent): 0.3%, <0.1%
  function pct(p) { return p > 0 && p < 0.0005 ? "<0.1%" : `${(100 * p).toFixed(1)}%`; }
  function fmt(v) {
    if (v === null || v === undefined) return "";
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e4) ? v.toExponential(3) : v.toPrecision(4).replace(/\.?0+$/, "");
  }

  // ---------------------------------------------------------------- URL state
  function readURL() {
    const p = new URLSearchParams(location.search);
    for (const k of ["image", "layer", "method", "cmap", "norm", "sort", "compare", "model", "vs"]) if (p.get(k)) S[k] = p.get(k);
    if (p.get("class") !== null) S.cls = p.get("class");
    if (p.get("channel") !== null && p.get("channel") !== "") S.channel = parseInt(p.get("channel"), 10);
    if (p.get("page")) S.page = parseInt(p.get("page"), 10) || 0;
    if (p.get("opacity")) S.opacity = parseInt(p.get("opacity"), 10);
    S.cam = p.get("cam") === "1";
  }
  function writeURL() {
    const s = q({
      image: S.image, layer: S.layer, channel: S.channel, class: S.cls, method: S.method, cmap: S.cmap,
      norm: S.norm, sort: S.sort, page: S.page || null, compare: S.compare, cam: S.cam ? 1 : null,
      model: S.model === "m0" ? null : S.model, vs: S.vs,
      opacity: S.channel !== null ? S.opacity : null,
    });
    history.replaceState(null, "", s ? `?${s}` : location.pathname);
  }

  // ---------------------------------------------------------------- set-up
  async function start() {
    readURL();
    info = await api(`/api/info?${mq({})}`);
    const m = info.model;
    if (info.models.length > 1) {
      $("modelwrap").hidden = false; $("vswrap").hidden = false;
      option($("vs"), "", "(nothing)");
      for (const mm of info.models) {
        option($("modelsel"), mm.id, `${mm.id}: ${mm.name}`);
        if (mm.id !== S.model) option($("vs"), mm.id, `${mm.id}: ${mm.name}`);
      }
      $("modelsel").value = S.model;
      if (S.vs === S.model) S.vs = "";
      $("vs").value = S.vs;
    } else { S.vs = ""; }
    $("model").textContent = `${m.name} - ${m.source} - input ${m.input_shape.map((d) => d ?? "any").join("x")}`;
    $("random").hidden = !m.random_weights;
    for (const c of info.cmaps) option($("cmap"), c, c);
    for (const n of info.norms) option($("norm"), n, n);
    for (const s of info.sorts) option($("sort"), s, s === "index" ? "channel number" : `${s} activation`);
    for (const me of info.methods) option($("cammethod"), me, me);
    option($("camclass"), "", "predicted class");
    info.classes.forEach((c, i) => option($("camclass"), String(i), `${i}: ${c}`));
    $("rfnote").textContent = info.receptive_field.exact
      ? "Receptive fields are exact (a chain of layers)."
      : `Receptive fields are approximate: ${info.receptive_field.note}.`;
    $("cmap").value = S.cmap; $("norm").value = S.norm; $("sort").value = S.sort; $("cammethod").value = S.method;
    $("camclass").value = S.cls; $("opacity").value = S.opacity;
    fillImages(info.images);
    buildRail();
    bind();
    if (!S.image && info.images.length) S.image = info.images[0].id;
    if (S.image) await loadImage(S.image);
    else status("upload or drop an image to begin");
  }
  function fillImages(list) {
    for (const sel of [$("images"), $("compare")]) {
      const keep = sel.value;
      sel.textContent = "";
      if (sel.id === "compare") option(sel, "", "(nothing)");
      else if (!list.length) option(sel, "", "(none yet: upload one)");
      for (const im of list) option(sel, im.id, `${im.name} (${im.origin})`);
      sel.value = keep;
    }
    if (S.image) $("images").value = S.image;
    $("compare").value = S.compare || "";
  }
  function buildRail() {
    const ol = $("layers");
    ol.textContent = "";
    for (const L of info.layers) {
      const li = document.createElement("li");
      li.dataset.label = L.label;
      const n = document.createElement("div"); n.className = "lname"; n.textContent = `${L.label}  ${L.name}`;
      const s = document.createElement("div"); s.className = "lshape";
      s.textContent = `${L.kind} ${L.shape ? L.shape.map((d) => d ?? "?").join("x") : ""}`;
      const st = document.createElement("div"); st.className = "lstats";
      li.append(n, s, st);
      li.addEventListener("click", () => selectLayer(L.label));
      ol.appendChild(li);
    }
  }
  function bind() {
    $("images").addEventListener("change", () => { if ($("images").value) loadImage($("images").value); });
    $("file").addEventListener("change", () => { if ($("file").files.length) upload($("file").files[0]); });
    const drop = $("drop");
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault(); drop.classList.remove("over");
      if (e.dataTransfer.files.length) upload(e.dataTransfer.files[0]);
    });
    for (const id of ["cmap", "norm"]) $(id).addEventListener("change", () => { S[id] = $(id).value; render(); });
    $("sort").addEventListener("change", () => { S.sort = $("sort").value; S.page = 0; selectLayer(S.layer); });
    $("prev").addEventListener("click", () => { if (S.page > 0) { S.page--; render(); } });
    $("next").addEventListener("click", () => { if ((S.page + 1) * PER_PAGE < view.shape[2]) { S.page++; render(); } });
    $("compare").addEventListener("change", () => {
      S.compare = $("compare").value;
      if (S.compare) { S.vs = ""; $("vs").value = ""; }
      selectLayer(S.layer);
    });
    $("vs").addEventListener("change", () => {
      S.vs = $("vs").value; summaryB = null;
      if (S.vs) { S.compare = ""; $("compare").value = ""; }
      selectLayer(S.layer, true);
    });
    $("modelsel").addEventListener("change", () => {  // another model in the main view: its own rail and info
      S.model = $("modelsel").value; if (S.vs === S.model) S.vs = "";
      S.channel = null; S.page = 0; S.layer = "C1"; writeURL(); location.reload();
    });
    $("opacity").addEventListener("input", () => { S.opacity = +$("opacity").value; $("doverlay").style.opacity = S.opacity / 100; writeURL(); });
    $("closedetail").addEventListener("click", () => { S.channel = null; renderDetail(); writeURL(); });
    $("camgo").addEventListener("click", () => { S.cam = true; S.cls = $("camclass").value; S.method = $("cammethod").value; renderCam(); });
    $("exportpng").addEventListener("click", exportPNG);
    $("exportnpy").addEventListener("click", () => download(`${imgBase(S.image)}/layers/${enc(S.layer)}/maps.npy?${mq({})}`));
    const big = $("detailwrap");
    big.addEventListener("mousemove", (e) => hover(e, big, S.image, view, S.channel, S.model));
    big.addEventListener("mouseleave", () => { $("rfbox").hidden = true; });
  }

  // ---------------------------------------------------------------- images
  async function upload(file) {
    status(`uploading ${file.name} ...`);
    try {
      const r = await api("/api/images", { method: "POST", body: file, headers: { "X-Filename": enc(file.name) } });
      const list = await api("/api/images");
      info.images = list.images;
      fillImages(list.images);
      await loadImage(r.id);
    } catch (e) {
      status(`upload refused: ${e.message}`, true);
    }
  }
  async function loadImage(id) {
    S.image = id; summaryB = null;
    $("images").value = id;
    status("running the image through the network ...");
    try {
      summary = await api(`${imgBase(id)}?${mq({})}`);
    } catch (e) { status(e.message, true); return; }
    $("input").src = `${imgBase(id)}/input.png?${mq({})}`;
    $("dinput").src = `${imgBase(id)}/input.png?${mq({})}`;
    $("inputnote").textContent = `what the network saw: ${summary.input_shape.join("x")}` +
      (summary.face_crop ? (summary.face_box ? " (face crop)" : " (no face found: whole image)") : "");
    renderFace();
    renderPrediction();
    for (const li of $("layers").children) {
      const st = summary.layers.find((l) => l.label === li.dataset.label);
      if (st) li.querySelector(".lstats").textContent = `mean ${fmt(st.mean)} · zeros ${(100 * st.zero_fraction).toFixed(0)}% · dead ${st.dead}/${st.channels}`;
    }
    const known = info.layers.some((l) => l.label === S.layer);
    await selectLayer(known ? S.layer : info.layers[0].label, true);
  }
  function renderFace() {
    const fw = $("facewrap");
    if (!summary.face_crop || !summary.face_box) { fw.hidden = true; return; }
    fw.hidden = false;
    const o = $("original");
    o.onload = () => {
      const [x, y, w, h] = summary.face_box, k = o.clientWidth / summary.original_size[1], b = $("facebox");
      Object.assign(b.style, { left: `${x * k}px`, top: `${y * k}px`, width: `${w * k}px`, height: `${h * k}px` });
    };
    o.src = `${imgBase(S.image)}/original.png?${mq({})}`;
  }
  function renderPrediction() {
    const p = $("pred");
    p.textContent = "";
    if (!summary.prediction.length) { p.textContent = "this model does not output class scores"; return; }
    if (summary.random_weights) {
      const w = document.createElement("p"); w.className = "warn";
      w.textContent = "random weights: these numbers are noise"; p.appendChild(w);
    }
    for (const c of summary.prediction) {
      const row = document.createElement("div"); row.className = "bar";
      const n = document.createElement("span"); n.textContent = c.class; n.title = c.class;
      const t = document.createElement("span"); t.className = "track";
      const f = document.createElement("span"); f.className = "fill"; f.style.display = "block";
      f.style.width = `${(100 * c.probability).toFixed(1)}%`; t.appendChild(f);
      const v = document.createElement("span"); v.textContent = pct(c.probability);
      row.append(n, t, v); p.appendChild(row);
    }
  }

  // ---------------------------------------------------------------- layers and grid
  async function selectLayer(label, keepPage) {
    if (!S.image) return;
    if (label !== S.layer) { S.channel = null; }
    if (label !== S.layer || !keepPage) S.page = keepPage ? S.page : 0;
    S.layer = label;
    for (const li of $("layers").children) li.classList.toggle("active", li.dataset.label === label);
    const ticket = ++layerTicket;
    let v, vB = null;
    try {
      v = await api(`${imgBase(S.image)}/layers/${enc(label)}?${mq({ sort: S.sort })}`);
      if (S.vs) {  // the same image through the other model, at the layer of the same relative depth
        const other = info.models.find((x) => x.id === S.vs);
        if (!summaryB) summaryB = await api(`${imgBase(S.image)}?${mq({}, S.vs)}`);
        vB = await api(`${imgBase(S.image)}/layers/${enc(other.align[label])}?${mq({ sort: S.sort }, S.vs)}`);
      } else if (S.compare) {
        vB = await api(`${imgBase(S.compare)}/layers/${enc(label)}?${mq({ sort: S.sort })}`);
      }
    } catch (e) { if (ticket === layerTicket) status(e.message, true); return; }
    if (ticket !== layerTicket) return;
    view = v; viewB = vB;
    if (S.page * PER_PAGE >= view.shape[2]) S.page = 0;
    if (S.channel !== null && S.channel >= view.shape[2]) S.channel = null;
    render();
  }
  function pageIds() { return view.order.slice(S.page * PER_PAGE, (S.page + 1) * PER_PAGE); }
  function render() {
    if (!view) return;
    const [H, W, C] = view.shape;
    $("layertitle").textContent = `${view.label} ${view.name}  ${H}x${W}x${C}`;
    const ids = pageIds();
    $("pageinfo").textContent = `channels ${S.page * PER_PAGE + 1}-${S.page * PER_PAGE + ids.length} of ${C}`;
    $("colorbar").src = `/api/colorbar.png?${q({ cmap: S.cmap })}`;
    const rng = S.norm === "map" ? null : view.ranges[S.norm];
    $("cblo").textContent = rng ? fmt(rng[0]) : "each map: its min";
    $("cbhi").textContent = rng ? fmt(rng[1]) : "its max";
    const gridQ = { cmap: S.cmap, norm: S.norm, channels: ids.join(",") };
    drawGrid($("grid"), S.image, view, ids, gridQ, S.model);
    const sorted = `sorted by ${S.sort === "index" ? "channel number" : S.sort}`;
    $("gridtitle").textContent = S.vs ? `${modelName(S.model)} · ${view.label} ${view.name} · ${top(summary)}`
      : S.compare ? nameOf(S.image) : sorted;
    $("panelB").hidden = !viewB;
    $("inputB").hidden = !(viewB && S.vs);
    if (viewB && S.vs) {
      const src = `${imgBase(S.image)}/input.png?${mq({}, S.vs)}`;  // its own input: a face crop, another size
      if ($("inputB").getAttribute("src") !== src) $("inputB").src = src;
      $("inputB").title = `what ${modelName(S.vs)} saw: ${summaryB.input_shape.join("x")}`;  // another model: its own channels, first page in the same sort
      const [hB, wB, cB] = viewB.shape, idsB = viewB.order.slice(0, PER_PAGE);
      $("gridtitleB").textContent = `${modelName(S.vs)} · ${viewB.label} ${viewB.name} ${hB}x${wB}x${cB} ` +
        `(same relative depth as ${view.label}) · ${top(summaryB)}` + (idsB.length < cB ? ` · first ${idsB.length} of ${cB}, ${sorted}` : "");
      drawGrid($("gridB"), S.image, viewB, idsB, { cmap: S.cmap, norm: S.norm, channels: idsB.join(",") }, S.vs);
    } else if (viewB) {
      $("gridtitleB").textContent = `${nameOf(S.compare)} (same channels)`;
      drawGrid($("gridB"), S.compare, viewB, ids, gridQ, S.model);
    }
    renderDetail();
    if (S.cam) renderCam();
    writeURL();
    status(`${view.label}: ${C} channels · mean ${fmt(view.stats.mean)} · zeros ${(100 * view.stats.zero_fraction).toFixed(0)}% · dead ${view.stats.dead}`);
  }
  function nameOf(id) { const im = info.images.find((i) => i.id === id); return im ? im.name : id; }
  function top(sm) {
    if (!sm || !sm.prediction.length) return "no class output";
    const p = sm.prediction[0];
    return sm.random_weights ? "random weights" : `predicts ${p.class} (${pct(p.probability)})`;
  }
  function drawGrid(el, image, v, ids, gridQ, model) {
    el.textContent = "";
    const [th, tw] = v.tile, cols = Math.min(v.cols, ids.length), rows = Math.ceil(ids.length / cols);
    const url = `${imgBase(image)}/layers/${enc(v.label)}/grid.png?${mq(gridQ, model)}`;
    ids.forEach((c, j) => {
      const cell = document.createElement("div"); cell.className = "cell"; cell.dataset.channel = c;
      cell.style.width = `${tw + 2}px`;
      const main = image === S.image && model === S.model;
      if (c === S.channel && main) cell.classList.add("sel");
      const t = document.createElement("div"); t.className = "tile";
      Object.assign(t.style, {
        width: `${tw}px`, height: `${th}px`, backgroundImage: `url("${url}")`,
        backgroundSize: `${cols * tw}px ${rows * th}px`,
        backgroundPosition: `-${(j % cols) * tw}px -${Math.floor(j / cols) * th}px`,
      });
      const cap = document.createElement("div"); cap.className = "cap";
      cap.textContent = `F${c + 1} · ${S.sort === "max" ? "max " + fmt(v.max[c]) : fmt(v.mean[c])}`;
      cap.title = `channel F${c + 1} (index ${c}): mean ${fmt(v.mean[c])}, max ${fmt(v.max[c])}`;
      cell.append(t, cap);
      t.addEventListener("mousemove", (e) => hover(e, t, image, v, c, model));
      t.addEventListener("mouseleave", () => { $("rfbox").hidden = true; });
      t.addEventListener("click", () => { if (main) { S.channel = c; render(); } });
      el.appendChild(cell);
    });
  }

  // ---------------------------------------------------------------- hover: value and receptive field
  function hover(e, el, image, v, c, model) {
    if (c === null || !v) return;
    const r = el.getBoundingClientRect(), [H, W] = v.shape;
    const y = Math.min(H - 1, Math.max(0, Math.floor(((e.clientY - r.top) / r.height) * H)));
    const x = Math.min(W - 1, Math.max(0, Math.floor(((e.clientX - r.left) / r.width) * W)));
    hoverNext = { image, label: v.label, c, y, x, model };
    if (!hoverBusy) pumpHover();
  }
  async function pumpHover() {
    const h = hoverNext; hoverNext = null;
    if (!h) return;
    hoverBusy = true;
    try {
      const r = await api(`${imgBase(h.image)}/layers/${enc(h.label)}/channels/${h.c}/value?${mq({ y: h.y, x: h.x }, h.model)}`);
      const who = info.models.length > 1 ? `${modelName(h.model)} ` : "";
      $("hover").textContent = `${who}${nameOf(h.image)} ${r.layer} F${r.channel + 1} at (y ${r.y}, x ${r.x}): ${fmt(r.value)}` +
        (r.rf ? `  ·  sees input rows ${r.rf.top}-${r.rf.bottom}, cols ${r.rf.left}-${r.rf.right}` +
          ` (field ${r.rf_size[0]}x${r.rf_size[1]}${r.rf_exact ? "" : ", approximate"})` : "");
      $("hover").dataset.value = String(r.value);
      drawRF(h.model === S.model ? r.rf : null);  // the box is drawn on the main model's input
    } catch (e) {
      status(e.message, true);
    } finally {
      hoverBusy = false;
      if (hoverNext) pumpHover();
    }
  }
  function drawRF(rf) {
    const box = $("rfbox"), img = $("input");
    if (!rf || !img.naturalWidth) { box.hidden = true; return; }
    const k = img.clientWidth / img.naturalWidth;
    Object.assign(box.style, {
      left: `${rf.left * k}px`, top: `${rf.top * k}px`,
      width: `${(rf.right - rf.left + 1) * k}px`, height: `${(rf.bottom - rf.top + 1) * k}px`,
    });
    box.hidden = false;
  }

  // ---------------------------------------------------------------- large view, CAM, export
  function renderDetail() {
    const d = $("detail");
    if (S.channel === null || !view) { d.hidden = true; return; }
    d.hidden = false;
    $("detailtitle").textContent = `${view.label} F${S.channel + 1} over the input`;
    $("doverlay").src = `${imgBase(S.image)}/layers/${enc(S.layer)}/channels/${S.channel}.png?${mq({ cmap: S.cmap, norm: S.norm })}`;
    $("doverlay").style.opacity = S.opacity / 100;
    $("opacity").value = S.opacity;
  }
  async function renderCam() {
    const cq = { layer: S.layer, method: S.method, class: S.cls };
    $("caminfo").textContent = `computing ${S.method} at ${S.layer} ...`;
    const ticket = ++camTicket;
    try {
      const r = await api(`${imgBase(S.image)}/cam?${mq(cq)}`);
      if (ticket !== camTicket) return;
      const img = $("camimg");
      img.src = `${imgBase(S.image)}/cam.png?${mq(cq)}`;
      img.hidden = false;
      $("caminfo").textContent = `${r.method} at ${r.layer} ${r.layer_name} for "${r.class}"` +
        (r.probability !== null ? ` (p ${pct(r.probability).startsWith("<") ? pct(r.probability) : "= " + pct(r.probability)})` : "") +
        (r.random_weights ? " - random weights" : "");
    } catch (e) {
      if (ticket !== camTicket) return;
      $("caminfo").textContent = e.message;
      status(e.message, true);
    }
    writeURL();
  }
  function download(url) {
    const a = document.createElement("a");
    a.href = url; a.download = ""; document.body.appendChild(a); a.click(); a.remove();
  }
  function exportPNG() {
    if (!view) return;
    const base = `${imgBase(S.image)}/layers/${enc(S.layer)}`;
    if (S.channel !== null) {
      download(`${base}/channels/${S.channel}.png?${mq({ cmap: S.cmap, norm: S.norm, alpha: S.opacity / 100, download: 1 })}`);
    } else {
      download(`${base}/grid.png?${mq({ cmap: S.cmap, norm: S.norm, channels: pageIds().join(","), download: 1 })}`);
    }
  }

  start().catch((e) => status(e.message, true));
})();

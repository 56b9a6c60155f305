// featuremaps explore: the page. Talks only to the server that served it (same origin, no CDN).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const PER_PAGE = 64;
  const HOVER_PROMPT = $("hover").textContent;  // the line before any hover
  const S = {
    image: null, layer: "C1", channel: null, cls: "", method: "gradcam", cmap: "viridis", norm: "map",
    sort: "index", page: 0, compare: "", cam: false, opacity: 60, model: "m0", vs: "", steps: null,
  };
  let info = null, summary = null, summaryB = null, view = null, viewB = null, hoverBusy = false, hoverNext = null;
  let layerTicket = 0, camTicket = 0, imageTicket = 0, renderTicket = 0, lookTicket = 0;  // only the latest request of each kind updates the page
  let lookTimer = null;  // the next poll of the "what it looks for" job on screen
  let camShown = "";  // the CAM on screen (its query): redrawn only when the layer, class, method or image change
  let drawSeq = 0;  // grids drawn so far (data-drawn on #grid: for tests and benchmarks/bench_explore_page.py)

  // A visited layer costs no request: its JSON and its sprite are kept here (the server's answers for an image id
  // never change: command-line ids are fixed for the server's life, uploads are named by the hash of their bytes).
  const jsonCache = new Map(), spriteCache = new Map();
  const JSON_KEEP = 200, SPRITE_BYTES = 96 * 2 ** 20;
  let spriteBytes = 0;
  function remember(map, key, value) {
    map.delete(key); map.set(key, value);
  }
  async function cachedJSON(url) {
    if (jsonCache.has(url)) { const v = jsonCache.get(url); remember(jsonCache, url, v); return v; }
    const v = await api(url);
    remember(jsonCache, url, v);
    if (jsonCache.size > JSON_KEEP) jsonCache.delete(jsonCache.keys().next().value);
    return v;
  }
  async function sprite(url) {  // an object URL of the sprite, decoded: drawing it next is immediate
    const hit = spriteCache.get(url);
    if (hit) { remember(spriteCache, url, hit); return hit.src; }
    const r = await fetch(url);
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      throw new Error(body.error || `HTTP ${r.status}`);
    }
    const blob = await r.blob(), src = URL.createObjectURL(blob), img = new Image();
    img.src = src;
    await img.decode().catch(() => {});
    remember(spriteCache, url, { src, img, size: blob.size });
    spriteBytes += blob.size;
    while (spriteBytes > SPRITE_BYTES && spriteCache.size > 1) {
      const [k, old] = spriteCache.entries().next().value;
      spriteCache.delete(k); spriteBytes -= old.size; URL.revokeObjectURL(old.src);
    }
    return src;
  }

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
    if (p.get("steps")) S.steps = parseInt(p.get("steps"), 10) || null;  // the patterns panel's (default: the server's)
    S.cam = p.get("cam") === "1";
  }
  function writeURL() {
    const s = q({
      image: S.image, layer: S.layer, channel: S.channel, class: S.cls, method: S.method, cmap: S.cmap,
      norm: S.norm, sort: S.sort, page: S.page || null, compare: S.compare, cam: S.cam ? 1 : null,
      model: S.model === "m0" ? null : S.model, vs: S.vs,
      opacity: S.channel !== null ? S.opacity : null,
      steps: S.steps,
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
    $("camclass").value = S.cls; $("opacity").value = S.opacity; $("camon").checked = S.cam;
    let gone = "";
    if (S.image && !info.images.some((im) => im.id === S.image)) {  // a link to an upload the server forgot
      gone = `image '${S.image}' is no longer on this server (uploads are forgotten when the server restarts or many follow)`;
      S.image = null;
    }
    if (S.compare && !info.images.some((im) => im.id === S.compare)) S.compare = "";
    if (!S.image && info.images.length) S.image = info.images[0].id;
    fillImages(info.images);
    buildRail();
    bind();
    if (S.image) await loadImage(S.image);
    else { clearView(); status(gone || "upload or drop an image, or start the camera, to begin", !!gone); }
    if (gone && S.image) status(`${gone}; showing ${nameOf(S.image)}`, true);
  }
  function fillImages(list) {
    const offered = (id) => list.some((im) => im.id === id);
    for (const sel of [$("images"), $("compare")]) {
      sel.textContent = "";
      if (sel.id === "compare") option(sel, "", "(nothing)");
      else if (!list.length) option(sel, "", "(none yet: upload one)");
      else if (!offered(S.image)) option(sel, "", "(choose an image)");
      for (const im of list) {
        if (sel.id === "compare" && im.id === S.image) continue;  // not the image shown: the same grid twice
        option(sel, im.id, `${im.name} (${im.origin})`);
      }
    }
    $("images").value = offered(S.image) ? S.image : "";
    if (S.compare === S.image) S.compare = "";
    $("compare").value = offered(S.compare) ? S.compare : "";
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
    $("next").addEventListener("click", () => { if (view && (S.page + 1) * PER_PAGE < view.shape[2]) { S.page++; render(); } });
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
    $("camon").addEventListener("change", () => {  // a toggle: off, a layer switch does no CAM work at all
      S.cam = $("camon").checked;
      if (S.cam) renderCam(); else { hideCam(); if (live.on) liveSettings(); }
      writeURL();
    });
    for (const id of ["camclass", "cammethod"]) {
      $(id).addEventListener("change", () => {
        S.cls = $("camclass").value; S.method = $("cammethod").value;
        if (S.cam) renderCam();
        writeURL();
      });
    }
    $("camera").addEventListener("click", () => { if (live.on || live.starting) stopLive(null); else startLive(); });
    document.addEventListener("visibilitychange", () => { if (!document.hidden && live.on && !live.busy) sendFrame(); });
    $("freeze").addEventListener("click", freeze);
    $("lookbtn").addEventListener("click", () => renderLook(true));
    $("exportpng").addEventListener("click", exportPNG);
    $("exportnpy").addEventListener("click", () => live.on ? exportPNG() : view && download(`${imgBase(S.image)}/layers/${enc(S.layer)}/maps.npy?${mq({})}`));
    const big = $("detailwrap");
    big.addEventListener("mousemove", (e) => hover(e, big, S.image, view, S.channel, S.model));
    big.addEventListener("mouseleave", () => { $("rfbox").hidden = true; });
  }

  // ---------------------------------------------------------------- images
  async function refreshImages() {  // the server's list: an upload it could not use is no longer offered
    const list = await api("/api/images");
    info.images = list.images;
    fillImages(list.images);
  }
  async function upload(file) {
    status(`uploading ${file.name} ...`);
    let r;
    try {
      r = await api("/api/images", { method: "POST", body: file, headers: { "X-Filename": enc(file.name) } });
      await refreshImages();
    } catch (e) {
      status(`upload of ${file.name} refused: ${e.message}`, true);
      return;
    } finally {
      $("file").value = "";  // the chooser names no file: the upload is now in the images list (or refused)
    }
    await loadImage(r.id);
    return r.id;
  }
  function clearView(title) {  // nothing of another image stays on screen under this one's name
    summary = null; summaryB = null; view = null; viewB = null; camShown = "";
    ++layerTicket; ++camTicket; ++renderTicket;
    for (const id of ["input", "dinput", "original", "doverlay", "camimg", "inputB"]) $(id).removeAttribute("src");
    $("camimg").hidden = true; $("caminfo").textContent = "";
    $("inputnote").textContent = ""; $("facenote").hidden = true; $("facewrap").hidden = true;
    $("inputwrap").hidden = true;  // no image, not a broken one
    $("pred").textContent = ""; $("detail").hidden = true; $("rfbox").hidden = true;
    hideLook();
    $("layertitle").textContent = ""; $("layertitle").title = ""; $("pageinfo").textContent = "";
    $("cblo").textContent = ""; $("cbhi").textContent = "";
    for (const li of $("layers").children) li.querySelector(".lstats").textContent = "";
    for (const id of ["grid", "gridB"]) { $(id).textContent = ""; delete $(id).dataset.drawn; delete $(id).dataset.src; delete $(id).dataset.key; }
    $("panelB").hidden = true; $("inputBwrap").hidden = true;
    $("gridtitle").textContent = title || "";
  }
  async function loadImage(id) {
    if (live.on) stopLive(null, true);
    const ticket = ++imageTicket;
    S.image = id; summaryB = null;
    fillImages(info.images);  // the compare list offers every image but this one
    resetHover();
    status(`running ${nameOf(id)} through the network ...`);
    let sm;
    try {
      sm = await api(`${imgBase(id)}?${mq({})}`);
    } catch (e) {
      if (ticket !== imageTicket) return;
      const msg = `${nameOf(id)}: ${e.message}`;
      clearView(msg);
      await refreshImages().catch(() => {});
      if (!info.images.some((im) => im.id === id)) S.image = null;  // forgotten by the server: not offered
      writeURL();
      status(msg, true);
      return;
    }
    if (ticket !== imageTicket) return;
    if (camShown) { $("camimg").hidden = true; $("caminfo").textContent = ""; camShown = ""; }  // another image's
    summary = sm;
    $("input").src = `${imgBase(id)}/input.png?${mq({})}`;
    $("inputwrap").hidden = false;
    $("dinput").src = `${imgBase(id)}/input.png?${mq({})}`;
    $("inputnote").textContent = `what the network saw: ${inputNote(summary)}`;
    $("facenote").textContent = summary.note || "";
    $("facenote").hidden = !summary.note;
    renderFace();
    renderPrediction();
    for (const li of $("layers").children) {
      const st = summary.layers.find((l) => l.label === li.dataset.label);
      if (st) li.querySelector(".lstats").textContent = `mean ${fmt(st.mean)} · zeros ${(100 * st.zero_fraction).toFixed(0)}% · dead ${st.dead}/${st.channels}`;
    }
    const known = info.layers.some((l) => l.label === S.layer);
    await selectLayer(known ? S.layer : info.layers[0].label, true);
  }
  function inputNote(sm) {
    const shape = sm.input_shape.join("x");
    if (!sm.face_crop) return shape;
    if (sm.face_box) return `${shape} (face crop)`;
    return sm.note ? `${shape} (no face found: the whole photo)` : `${shape} (a face-sized image, fed as is)`;
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
  function renderPrediction(sm) {
    const p = $("pred"), shown = sm || summary;
    p.textContent = "";
    if (!shown.prediction.length) { p.textContent = "this model does not output class scores"; return; }
    if (shown.random_weights) {
      const w = document.createElement("p"); w.className = "warn";
      w.textContent = "random weights: these numbers are noise"; p.appendChild(w);
    }
    for (const c of shown.prediction) {
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
    if (live.on) { liveLayer(label); return; }
    if (!S.image || !summary) return;
    if (label !== S.layer) { S.channel = null; }
    if (label !== S.layer || !keepPage) S.page = keepPage ? S.page : 0;
    S.layer = label;
    for (const li of $("layers").children) li.classList.toggle("active", li.dataset.label === label);
    const ticket = ++layerTicket;
    let v, vB = null, sB = null;
    try {
      v = await cachedJSON(`${imgBase(S.image)}/layers/${enc(label)}?${mq({ sort: S.sort })}`);
    } catch (e) {
      if (ticket === layerTicket) clearGrids(`${nameOf(S.image)}, ${label}: ${e.message}`);
      return;
    }
    try {
      if (S.vs) {  // the same image through the other model, at the layer of the same relative depth
        const other = info.models.find((x) => x.id === S.vs);
        sB = await cachedJSON(`${imgBase(S.image)}?${mq({}, S.vs)}`);
        vB = await cachedJSON(`${imgBase(S.image)}/layers/${enc(other.align[label])}?${mq({ sort: S.sort }, S.vs)}`);
      } else if (S.compare) {  // another image through this model, the same channels
        sB = await cachedJSON(`${imgBase(S.compare)}?${mq({})}`);
        vB = await cachedJSON(`${imgBase(S.compare)}/layers/${enc(label)}?${mq({ sort: S.sort })}`);
      }
    } catch (e) {  // the second panel alone failed: the main view stays, the panel says why
      if (ticket !== layerTicket) return;
      vB = null; sB = null;
      $("gridtitleB").textContent = `${S.vs ? modelName(S.vs) : nameOf(S.compare)}: ${e.message}`;
      status(`compare: ${e.message}`, true);
    }
    if (ticket !== layerTicket) return;
    view = v; viewB = vB; summaryB = sB;
    if (S.page * PER_PAGE >= view.shape[2]) S.page = 0;
    if (S.channel !== null && S.channel >= view.shape[2]) S.channel = null;
    await render();
  }
  function clearGrids(msg) {  // a layer that failed: no other layer's maps stay under its title
    view = null; viewB = null; ++renderTicket;
    for (const id of ["grid", "gridB"]) { $(id).textContent = ""; delete $(id).dataset.drawn; delete $(id).dataset.src; delete $(id).dataset.key; }
    $("panelB").hidden = true; $("detail").hidden = true;
    $("layertitle").textContent = ""; $("pageinfo").textContent = ""; $("cblo").textContent = ""; $("cbhi").textContent = "";
    $("gridtitle").textContent = msg;
    status(msg, true);
  }
  function pageIds() { return view.order.slice(S.page * PER_PAGE, (S.page + 1) * PER_PAGE); }
  const gridURL = (image, v, gridQ, model) => `${imgBase(image)}/layers/${enc(v.label)}/grid.png?${mq(gridQ, model)}`;
  const nextFrame = () => new Promise((res) => requestAnimationFrame(() => setTimeout(res, 0)));
  async function render() {
    // The sprites first, then the whole view at once: a title never stands over another layer's maps.
    if (live.on) { liveSettings(); return; }  // the next frame's answer draws it
    if (!view) return;
    const ticket = ++renderTicket;
    const v = view, vB = viewB, sB = summaryB, ids = pageIds();
    const gridQ = { cmap: S.cmap, norm: S.norm, channels: ids.join(",") };
    let B = null;  // the second panel: another model (its own channels, first page) or another image (the same ones)
    if (vB && S.vs) {
      const idsB = vB.order.slice(0, PER_PAGE);
      B = { image: S.image, model: S.vs, ids: idsB, q: { cmap: S.cmap, norm: S.norm, channels: idsB.join(",") } };
    } else if (vB) {
      B = { image: S.compare, model: S.model, ids, q: gridQ };
    }
    const url = gridURL(S.image, v, gridQ, S.model);
    let src, srcB = null;
    status(`drawing ${v.label} ...`);
    try {
      [src, srcB] = await Promise.all([sprite(url), B ? sprite(gridURL(B.image, vB, B.q, B.model)) : null]);
    } catch (e) {
      if (ticket === renderTicket) clearGrids(`${nameOf(S.image)}, ${v.label}: ${e.message}`);
      return;
    }
    if (ticket !== renderTicket) return;
    const C = v.shape[2];
    layerHead(v, ids);
    drawGrid($("grid"), S.image, v, ids, src, url, S.model);
    const sorted = `sorted by ${S.sort === "index" ? "channel number" : S.sort}`;
    $("gridtitle").textContent = S.vs ? `${modelName(S.model)} · ${v.label} ${v.name} · ${top(summary)}`
      : S.compare ? nameOf(S.image) : sorted;
    $("panelB").hidden = !B;
    $("inputBwrap").hidden = !B;
    if (B) {
      // what the network saw of the other side: the other model's own input (a face crop, another size), or the
      // other image's (its face crop for the emotion model)
      const inB = `${imgBase(B.image)}/input.png?${mq({}, B.model)}`;
      if ($("inputB").getAttribute("src") !== inB) $("inputB").src = inB;
      const [hB, wB, cB] = vB.shape;
      if (S.vs) {
        $("inputBnote").textContent = `what ${modelName(S.vs)} saw: ${inputNote(sB)}`;
        $("gridtitleB").textContent = `${modelName(S.vs)} · ${vB.label} ${vB.name} ${hB}x${wB}x${cB} ` +
          `(same relative depth as ${v.label}) · ${top(sB)}` + (B.ids.length < cB ? ` · first ${B.ids.length} of ${cB}, ${sorted}` : "");
      } else {
        // the note says "no face found" itself: after the shape, not after inputNote's "(no face found ...)"
        const seen = sB.note ? `${sB.input_shape.join("x")}; ${sB.note}` : inputNote(sB);
        $("inputBnote").textContent = `what the network saw of ${nameOf(S.compare)}: ${seen}`;
        $("gridtitleB").textContent = `${nameOf(S.compare)} (same channels) · ${top(sB)}`;
      }
      drawGrid($("gridB"), B.image, vB, B.ids, srcB, gridURL(B.image, vB, B.q, B.model), B.model);
    }
    renderDetail();
    writeURL();
    status(`${v.label}: ${C} channels · mean ${fmt(v.stats.mean)} · zeros ${(100 * v.stats.zero_fraction).toFixed(0)}% · dead ${v.stats.dead}`);
    await nextFrame();  // painted: marked for tests and benchmarks (click-to-drawn)
    if (ticket !== renderTicket) return;
    $("grid").dataset.drawn = `${++drawSeq} ${v.label}`;
    if (S.cam) renderCam();  // after the maps: a CAM never delays a layer's grid
  }
  function layerHead(v, ids) {  // the toolbar over a grid: the layer's title, the page, the colour bar's range
    const [H, W, C] = v.shape;
    const title = `${v.label} ${v.name}  ${H}x${W}x${C}`;
    $("layertitle").textContent = title; $("layertitle").title = title;
    $("pageinfo").textContent = `channels ${S.page * PER_PAGE + 1}-${S.page * PER_PAGE + ids.length} of ${C}`;
    const bar = `/api/colorbar.png?${q({ cmap: S.cmap })}`;
    if ($("colorbar").getAttribute("src") !== bar) $("colorbar").src = bar;
    const rng = S.norm === "map" ? null : v.ranges[S.norm];
    $("cblo").textContent = rng ? fmt(rng[0]) : "each map: its min";
    $("cbhi").textContent = rng ? fmt(rng[1]) : "its max";
    $("cblo").title = $("cblo").textContent; $("cbhi").title = $("cbhi").textContent;
  }
  function nameOf(id) { const im = info.images.find((i) => i.id === id); return im ? im.name : id; }
  function top(sm) {
    if (!sm || !sm.prediction.length) return "no class output";
    const p = sm.prediction[0];
    return sm.random_weights ? "random weights" : `predicts ${p.class} (${pct(p.probability)})`;
  }
  function drawGrid(el, image, v, ids, src, url, model) {
    el.dataset.src = url;  // the route the sprite came from (its query: colormap, norm, channels)
    el.style.setProperty("--sprite", `url("${src}")`);  // every tile shows its part of it: one write a new sprite
    const [th, tw] = v.tile, cols = Math.min(v.cols, ids.length), rows = Math.ceil(ids.length / cols);
    const key = `${image} ${model} ${v.label} ${th}x${tw} ${ids.join(",")}`;
    if (image === LIVE && el.dataset.key === key) {  // the next frame, same tiles: only the sprite and captions
      let j = 0;
      for (const cell of el.children) { caption(cell.lastChild, v, ids[j++]); }
      return;
    }
    el.dataset.key = key;
    el.textContent = "";
    const main = image === S.image && model === S.model;
    const frag = document.createDocumentFragment();
    ids.forEach((c, j) => {
      const cell = document.createElement("div"); cell.className = "cell"; cell.dataset.channel = c;
      cell.style.width = `${tw + 2}px`;
      if (c === S.channel && main) cell.classList.add("sel");
      const t = document.createElement("div"); t.className = "tile";
      Object.assign(t.style, {
        width: `${tw}px`, height: `${th}px`, backgroundImage: "var(--sprite)",
        backgroundSize: `${cols * tw}px ${rows * th}px`,
        backgroundPosition: `-${(j % cols) * tw}px -${Math.floor(j / cols) * th}px`,
      });
      const cap = document.createElement("div"); cap.className = "cap";
      caption(cap, v, c);
      cell.append(t, cap);
      t.addEventListener("mousemove", (e) => hover(e, t, image, v, c, model));
      t.addEventListener("mouseleave", () => { $("rfbox").hidden = true; });
      t.addEventListener("click", () => { if (main) { S.channel = c; render(); } });
      frag.appendChild(cell);
    });
    el.appendChild(frag);
  }

  function caption(cap, v, c) {
    cap.textContent = `F${c + 1} · ${S.sort === "max" ? "max " + fmt(v.max[c]) : fmt(v.mean[c])}`;
    cap.title = `channel F${c + 1} (index ${c}): mean ${fmt(v.mean[c])}, max ${fmt(v.max[c])}`;
  }

  // ---------------------------------------------------------------- hover: value and receptive field
  function hover(e, el, image, v, c, model) {
    if (image === LIVE) { $("hover").textContent = "live: freeze the camera to read values and receptive fields"; return; }
    if (c === null || !v) return;
    const r = el.getBoundingClientRect(), [H, W] = v.shape;
    const y = Math.min(H - 1, Math.max(0, Math.floor(((e.clientY - r.top) / r.height) * H)));
    const x = Math.min(W - 1, Math.max(0, Math.floor(((e.clientX - r.left) / r.width) * W)));
    hoverNext = { image, label: v.label, c, y, x, model };
    if (!hoverBusy) pumpHover();
  }
  // another image: the line and the box of the last one go (an answer still on its way is dropped)
  let hoverTicket = 0;
  function resetHover() {
    hoverTicket++; hoverNext = null;
    $("hover").textContent = HOVER_PROMPT;
    delete $("hover").dataset.value;
    $("rfbox").hidden = true;
  }
  async function pumpHover() {
    const h = hoverNext; hoverNext = null;
    if (!h) return;
    hoverBusy = true;
    const ticket = hoverTicket;
    try {
      const r = await api(`${imgBase(h.image)}/layers/${enc(h.label)}/channels/${h.c}/value?${mq({ y: h.y, x: h.x }, h.model)}`);
      if (ticket !== hoverTicket) return;
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
    renderLook(false);
    if (S.channel === null || !view) { d.hidden = true; return; }
    d.hidden = false;
    $("detailtitle").textContent = `${view.label} F${S.channel + 1} over the input`;
    $("doverlay").src = `${imgBase(S.image)}/layers/${enc(S.layer)}/channels/${S.channel}.png?${mq({ cmap: S.cmap, norm: S.norm })}`;
    $("doverlay").style.opacity = S.opacity / 100;
    $("opacity").value = S.opacity;
  }
  // ---------------------------------------------------------------- what the selected channel looks for
  // Computed on request (the button), not on selection: 256 forward + backward passes cost seconds on a small
  // model and tens of seconds on VGG16, and clicking through channels must not queue that work. A channel already
  // computed (this page, another tab, a previous visit) shows at once: selecting asks for its status only.
  const lookBase = () => `/api/patterns/${enc(S.layer)}/${S.channel}`;
  function hideLook() {
    ++lookTicket; clearTimeout(lookTimer);
    $("lookpanel").hidden = true; delete $("lookpanel").dataset.key; delete $("lookpanel").dataset.state;
  }
  async function renderLook(compute) {
    if (S.channel === null || !view || live.on) { hideLook(); return; }
    const panel = $("lookpanel"), key = `${S.model} ${S.layer} ${S.channel}`;
    const ticket = ++lookTicket;
    clearTimeout(lookTimer);
    panel.hidden = false;
    if (panel.dataset.key !== key) {  // nothing of another channel stays under this one's title
      panel.dataset.key = key; delete panel.dataset.state;
      $("looktitle").textContent = `What ${S.layer} F${S.channel + 1} looks for`;
      $("lookimg").hidden = true; $("lookimg").removeAttribute("src");
      $("lookvalue").textContent = ""; $("lookex").textContent = ""; $("lookstate").textContent = "";
      $("lookprogress").hidden = true; $("lookbtn").hidden = true;
    }
    try {
      const r = await api(`${lookBase()}?${mq({ steps: S.steps })}`, compute ? { method: "POST" } : undefined);
      if (ticket === lookTicket) showLook(r, ticket);
    } catch (e) {
      if (ticket !== lookTicket) return;
      $("lookstate").textContent = e.message;
      status(e.message, true);
    }
  }
  async function pollLook(ticket) {
    if (ticket !== lookTicket) return;
    try {
      const r = await api(`${lookBase()}?${mq({ steps: S.steps })}`);
      if (ticket === lookTicket) showLook(r, ticket);
    } catch (e) {
      if (ticket === lookTicket) $("lookstate").textContent = e.message;
    }
  }
  function showLook(r, ticket) {
    const panel = $("lookpanel"), busy = r.state === "queued" || r.state === "running";
    panel.dataset.state = r.state;
    const what = r.gradients ? "compute" : "find exemplars";
    $("lookbtn").textContent = r.state === "cancelled" || r.state === "error" ? `${what} again` : what;
    $("lookbtn").hidden = r.state === "done" || busy;
    $("lookprogress").hidden = !busy;
    $("lookprogress").max = Math.max(1, r.total); $("lookprogress").value = r.done;
    const notes = [];
    if (r.note) notes.push(r.note);
    if (r.random_weights) notes.push("random weights: an untrained channel's pattern means little");
    $("looknote").textContent = notes.join("; "); $("looknote").hidden = !notes.length;
    $("lookstate").textContent = {
      idle: r.gradients ? `not computed yet: ${r.steps} steps of gradient ascent at ${r.size[0]}x${r.size[1]}, in the background` : "not computed yet",
      queued: "waiting for the model ...",
      running: `${r.phase}` + (r.done > 2 && r.elapsed ? ` · about ${Math.ceil((r.elapsed / r.done) * (r.total - r.done))} s left` : ""),
      cancelled: "stopped: another channel was asked for",
      error: r.error || "failed",
      done: r.seconds !== undefined ? `computed in ${r.seconds.toFixed(1)} s` : "",
    }[r.state] || "";
    if (r.png) {
      const src = `${lookBase()}.png?${mq({ steps: S.steps })}`;
      if ($("lookimg").getAttribute("src") !== src) $("lookimg").src = src;
      $("lookimg").hidden = false;
      $("lookvalue").textContent = `objective ${fmt(r.value)} (step 1: ${fmt(r.first)}) · its largest activation ${fmt(r.max)}` +
        (r.exemplars && r.exemplars.length ? ` · best image here ${fmt(r.exemplars[0].value)}` : "");
      $("lookvalue").title = `${r.objective}; the largest activation is the exemplars' measure`;
    }
    if (r.exemplars && r.state === "done") {
      const box = $("lookex");
      box.textContent = "";
      if (!r.exemplars.length) box.textContent = "no images here to take exemplars from";
      for (const e of r.exemplars) {
        const f = document.createElement("figure"), img = document.createElement("img"), c = document.createElement("figcaption");
        img.src = e.src; img.alt = `${e.name}: the part its maximum sees`;
        img.title = `${e.name}: max ${fmt(e.value)}, input rows ${e.box.top}-${e.box.bottom}, cols ${e.box.left}-${e.box.right}`;
        c.textContent = `${fmt(e.value)} ${e.name}`;
        f.append(img, c); box.appendChild(f);
      }
    }
    if (busy) lookTimer = setTimeout(() => pollLook(ticket), 300);
  }
  function hideCam() {
    ++camTicket; camShown = "";
    $("camimg").hidden = true; $("camimg").removeAttribute("src");
    $("caminfo").textContent = "CAM off: layer switches compute none";
  }
  async function renderCam() {  // the CAM of the current image, layer, class and method (once: cached both sides)
    if (live.on) { liveSettings(); return; }  // each frame's answer brings its CAM
    if (!S.cam || !summary) return;
    const cq = { layer: S.layer, method: S.method, class: S.cls }, key = `${S.image} ${S.model} ${q(cq)}`;
    if (key === camShown) return;
    camShown = key;
    $("caminfo").textContent = `computing ${S.method} at ${S.layer} ...`;
    $("camimg").hidden = true;
    const ticket = ++camTicket;
    try {
      const r = await cachedJSON(`${imgBase(S.image)}/cam?${mq(cq)}`);
      if (ticket !== camTicket) return;
      const img = $("camimg");
      img.src = `${imgBase(S.image)}/cam.png?${mq(cq)}`;
      img.hidden = false;
      $("caminfo").textContent = `${r.method} at ${r.layer} ${r.layer_name} for "${r.class}"` +
        (r.probability !== null ? ` (p ${pct(r.probability).startsWith("<") ? pct(r.probability) : "= " + pct(r.probability)})` : "") +
        (r.random_weights ? " - random weights" : "");
    } catch (e) {
      if (ticket !== camTicket) return;
      camShown = "";
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
    if (live.on) { status("live: freeze the camera to export its frame", true); return; }
    if (!view) return;
    const base = `${imgBase(S.image)}/layers/${enc(S.layer)}`;
    if (S.channel !== null) {
      download(`${base}/channels/${S.channel}.png?${mq({ cmap: S.cmap, norm: S.norm, alpha: S.opacity / 100, download: 1 })}`);
    } else {
      download(`${base}/grid.png?${mq({ cmap: S.cmap, norm: S.norm, channels: pageIds().join(","), download: 1 })}`);
    }
  }

  // ---------------------------------------------------------------- live: the camera
  // Frames from getUserMedia, scaled down here to what the model needs (raw pixels, gray for a gray model), go to
  // the server over a WebSocket; it answers each with the prediction, the current layer's grid (one page of channels) and a CAM
  // when that is on. One frame is in flight: the next is sent when the answer is drawn, or after BUDGET_MS (the
  // server keeps only the newest waiting frame, so a slow model answers fresh pictures at a lower rate).
  const LIVE = "live";  // the image id of the live view's grid (no route: hover and clicks wait for a freeze)
  const BUDGET_MS = 250, KEEP_LATENCIES = 1000;
  const live = {
    on: false, starting: false, ws: null, media: null, busy: false, sent: 0, inflight: new Map(), budget: null,
    shown: null, urls: {}, lat: [], server: [], stamps: [], phases: {}, canvas: null,
  };
  // for tests and benchmarks/bench_live.py: answers drawn, fps over the last 2 s, the median frame-to-drawn time
  // (capture in this page to the frame after the grid is in place), the prediction; latencies: the recent ones
  const liveState = window.featuremapsLive = {
    frames: 0, fps: 0, latencyMs: null, label: "", dropped: 0, errors: 0, state: "off", serverMs: null, latencies: [],
  };
  function liveNote(msg, isWarn) {
    $("livenote").textContent = msg || "";
    $("livenote").hidden = !msg;
    $("livenote").className = isWarn === false ? "muted" : "warn";
  }
  function cameraProblem(e) {
    const n = e && e.name;
    if (n === "NotAllowedError" || n === "SecurityError") return "camera refused: allow the camera for this page in the browser's site settings, then press camera again";
    if (n === "NotFoundError" || n === "OverconstrainedError" || n === "DevicesNotFoundError") return "no camera found: connect one, then press camera again";
    if (n === "NotReadableError") return "the camera is in use by another program (or failed to start): close it, then press camera again";
    return `the camera could not start (${n || "error"}: ${(e && e.message) || "unknown"})`;
  }
  async function startLive() {
    liveNote("");
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      liveNote("no camera: this browser gives the page none (open the page at 127.0.0.1 or localhost, a secure context)");
      return;
    }
    live.starting = true; setCameraButton(true);
    let media;
    try {
      media = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
    } catch (e) {
      live.starting = false; setCameraButton(false);
      liveNote(cameraProblem(e)); status(cameraProblem(e), true);
      return;
    }
    if (!live.starting) { media.getTracks().forEach((t) => t.stop()); return; }  // stopped while asking
    live.starting = false; live.on = true; live.media = media;
    live.lat = []; live.server = []; live.stamps = []; live.phases = {};
    Object.assign(liveState, { frames: 0, fps: 0, latencyMs: null, label: "", dropped: 0, errors: 0, state: "starting", serverMs: null, latencies: live.lat }); live.sent = 0; live.inflight.clear(); live.shown = null; live.busy = false;
    ++layerTicket; ++renderTicket; ++camTicket; ++imageTicket;  // nothing of the image view lands over the live one
    S.channel = null; camShown = "";
    $("detail").hidden = true; $("panelB").hidden = true; $("facewrap").hidden = true; $("facenote").hidden = true;
    $("camimg").hidden = true; $("caminfo").textContent = S.cam ? "CAM of each frame ..." : "";
    for (const li of $("layers").children) li.querySelector(".lstats").textContent = "";  // the image's, not the frames'
    $("inputnote").textContent = "";
    const video = $("video");
    video.srcObject = media;
    $("videowrap").hidden = false;
    await video.play().catch(() => {});
    live.videoWidth = video.clientWidth;
    status("live: starting the camera stream ...");
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/live?${mq({})}`);
    ws.binaryType = "arraybuffer";
    live.ws = ws;
    ws.onopen = () => { liveSettings(); sendFrame(); };
    ws.onmessage = (ev) => { if (live.ws === ws) onAnswer(ev.data); };
    let opened = false;
    ws.addEventListener("open", () => { opened = true; });
    ws.onclose = (ev) => {
      if (live.ws !== ws) return;
      stopLive(opened
        ? `the live stream closed (${ev.code}${ev.reason ? ": " + ev.reason : ""}); press camera to start again`
        : "the server could not open the live stream (it needs the websockets package: pip install 'featuremaps[explore]')");
    };
  }
  function setCameraButton(on) {
    $("camera").setAttribute("aria-pressed", on ? "true" : "false");
    $("camera").textContent = on ? "\u25A0 stop camera" : "\u25CF camera";
    $("freeze").disabled = !on;
  }
  function stopLive(msg, keepView) {
    const was = live.on;
    live.on = false; live.starting = false;
    clearTimeout(live.budget);
    const ws = live.ws; live.ws = null;
    if (ws && ws.readyState <= 1) ws.close(1000);
    if (live.media) live.media.getTracks().forEach((t) => t.stop());
    live.media = null; live.inflight.clear();
    $("video").srcObject = null; $("videowrap").hidden = true; $("livebox").hidden = true; $("liveheat").hidden = true;
    $("grid").classList.remove("stale");
    for (const u of Object.values(live.urls)) URL.revokeObjectURL(u);
    live.urls = {};
    setCameraButton(false);
    liveState.state = "off";
    $("livestats").textContent = "";
    liveNote(msg || "");
    if (msg) status(msg, true);
    if (!was || keepView) return;
    view = null; viewB = null;
    if (S.image) loadImage(S.image);
    else clearView("upload or drop an image, or start the camera");
  }
  function liveLayer(label) {
    if (label !== S.layer) { S.page = 0; S.channel = null; }
    S.layer = label;
    for (const li of $("layers").children) li.classList.toggle("active", li.dataset.label === label);
    liveSettings();
  }
  function liveSettings() {  // what each answer shows; the page's own state decides it, the socket follows
    if (!live.ws || live.ws.readyState !== 1) return;
    live.ws.send(JSON.stringify({
      layer: S.layer, sort: S.sort, page: S.page, per_page: PER_PAGE, cmap: S.cmap, norm: S.norm,
      cam: S.cam, method: S.method, class: S.cls,
    }));
    writeURL();
  }
  function sendFrame() {
    clearTimeout(live.budget);
    const ws = live.ws, video = $("video");
    if (!live.on || !ws || ws.readyState !== 1) return;
    if (!video.videoWidth) { live.budget = setTimeout(sendFrame, 30); return; }  // no picture yet
    // a hidden tab draws nothing (no animation frames): it sends nothing either, so no answers wait on it
    if (document.hidden) { live.busy = false; return; }
    const vw = video.videoWidth, vh = video.videoHeight, k = Math.min(1, info.live.frame_side / Math.min(vw, vh));
    const w = Math.max(1, Math.round(vw * k)), h = Math.max(1, Math.round(vh * k));
    if (!live.canvas || live.canvas.width !== w || live.canvas.height !== h) live.canvas = new OffscreenCanvas(w, h);
    const t0 = performance.now(), ctx = live.canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(video, 0, 0, w, h);
    const pixels = ctx.getImageData(0, 0, w, h);
    const frame = rawFrame(pixels, info.live.channels);  // no image encoding here, no decoding there
    live.busy = true;
    const n = ++live.sent;
    live.inflight.set(n, { t0, pixels, sent: performance.now() });
    for (const key of live.inflight.keys()) { if (live.inflight.size <= 8) break; live.inflight.delete(key); }
    ws.send(frame);
    // no answer by then: a fresher frame (the server keeps the newest); a slow model's frames wait less this way
    // than they would behind a fixed budget shorter than its forward pass
    live.budget = setTimeout(sendFrame, Math.max(BUDGET_MS, 2 * (liveState.serverMs || 0)));
  }
  function rawFrame(img, channels) {  // explore/live.py's raw frame: "FMR1", width, height, channels, pixels
    const { width: w, height: h, data: px } = img, out = new Uint8Array(12 + w * h * channels);
    out.set([0x46, 0x4d, 0x52, 0x31]);
    const dv = new DataView(out.buffer);
    dv.setUint16(4, w); dv.setUint16(6, h); dv.setUint8(8, channels);
    if (channels === 1) {  // the model sees gray: a third of the bytes (BT.601 luma, as the server's conversion)
      for (let i = 0, j = 12; i < px.length; i += 4, j++) out[j] = (77 * px[i] + 150 * px[i + 1] + 29 * px[i + 2] + 128) >> 8;
    } else {
      for (let i = 0, j = 12; i < px.length; i += 4, j += 3) { out[j] = px[i]; out[j + 1] = px[i + 1]; out[j + 2] = px[i + 2]; }
    }
    return out;
  }
  const median = (a) => { if (!a.length) return null; const b = [...a].sort((x, y) => x - y), m = b.length >> 1; return b.length % 2 ? b[m] : (b[m - 1] + b[m]) / 2; };
  function phase(name, ms) {  // where a frame's time goes (medians of the last 100), for the benchmark
    const a = (live.phases[name] = live.phases[name] || []);
    a.push(ms); if (a.length > 100) a.shift();
  }
  async function onAnswer(data) {
    const tArrived = performance.now();
    if (typeof data === "string") {
      const m = JSON.parse(data);
      if (m.error && m.settings) { status(`live: ${m.error}`, true); return; }
      if (m.error) {
        liveState.errors++;
        liveNote(`live: ${m.error}`);
        status(`live: ${m.error}`, true);
        if (m.frame && live.inflight.has(m.frame)) { live.inflight.delete(m.frame); sendFrame(); }
      }
      return;
    }
    const dv = new DataView(data), n = dv.getUint32(0), head = JSON.parse(new TextDecoder().decode(new Uint8Array(data, 4, n)));
    const parts = {};
    let at = 4 + n;
    for (const p of head.parts) { parts[p.name] = new Blob([new Uint8Array(data, at, p.length)], { type: p.type }); at += p.length; }
    const sent = live.inflight.get(head.frame);
    for (const key of [...live.inflight.keys()]) if (key <= head.frame) live.inflight.delete(key);
    liveState.dropped = head.dropped;
    if (head.face === null && head.face_crop) {  // no face: say so, keep the last maps (faded), keep going
      $("grid").classList.add("stale");
      $("livebox").hidden = true;
      liveNote("no face in the frame: face the camera (the emotion model sees only a face)", true);
      liveState.label = "no face";
    } else {
      if (sent) { phase("encode", sent.sent - sent.t0); phase("server+network", tArrived - sent.sent); }
      await drawLive(head, parts);
      phase("draw", performance.now() - tArrived);
      if (!live.on) return;
    }
    const tDrawn = performance.now();
    await nextFrame();  // painted
    if (!live.on) return;
    const now = performance.now();
    phase("paint", now - tDrawn);
    liveState.frames++;
    live.stamps.push(now);
    while (live.stamps.length && now - live.stamps[0] > 2000) live.stamps.shift();
    if (sent) { live.lat.push(now - sent.t0); if (live.lat.length > KEEP_LATENCIES) live.lat.shift(); live.shown = { pixels: sent.pixels, frame: head.frame }; }
    live.server.push(Object.values(head.ms).reduce((a, b) => a + b, 0));
    if (live.server.length > 100) live.server.shift();
    liveState.serverMs = +median(live.server).toFixed(1);
    liveState.phases = Object.fromEntries(Object.entries(live.phases).map(([k, a]) => [k, +median(a).toFixed(1)]));
    const span = live.stamps.length > 1 ? (now - live.stamps[0]) / 1000 : 0;
    liveState.fps = span > 0 ? +((live.stamps.length - 1) / span).toFixed(2) : 0;
    liveState.latencyMs = live.lat.length ? +median(live.lat).toFixed(1) : null;
    liveState.state = "running";
    $("livestats").textContent = `${liveState.fps.toFixed(1)} fps · ${liveState.latencyMs === null ? "-" : Math.round(liveState.latencyMs)} ms` +
      (head.dropped ? ` · ${head.dropped} dropped` : "");
    $("livestats").title = `frames answered and drawn: ${liveState.frames}; median frame-to-drawn latency; frames the server skipped for newer ones: ${head.dropped}`;
    if (live.busy && (!sent || head.frame === live.sent)) { live.busy = false; sendFrame(); }
  }
  function objectURL(name, blob) {  // one URL per part, the previous one freed once replaced
    const old = live.urls[name], url = URL.createObjectURL(blob);
    live.urls[name] = url;
    return [url, old];
  }
  async function drawLive(head, parts) {
    const v = head.view, ids = head.channels;
    const [src, oldGrid] = objectURL("grid", parts.grid);
    const tDecode = performance.now(), img = new Image(); img.src = src;
    await img.decode().catch(() => {});
    phase("decode", performance.now() - tDecode);
    if (!live.on) { URL.revokeObjectURL(src); return; }
    view = v; viewB = null; S.page = v.page;
    layerHead(v, ids);
    drawGrid($("grid"), LIVE, v, ids, src, "live", S.model);
    $("grid").classList.remove("stale");
    $("gridtitle").textContent = `live · frame ${head.frame} · ${S.sort === "index" ? "channel number" : "sorted by " + S.sort}`;
    $("grid").dataset.drawn = `${++drawSeq} ${v.label}`;
    if (oldGrid) URL.revokeObjectURL(oldGrid);
    renderPrediction({ prediction: head.prediction, random_weights: head.random_weights });
    liveState.label = head.prediction.length ? head.prediction[0].class : "";
    const [inSrc, oldIn] = objectURL("input", parts.input);
    $("input").src = inSrc; $("inputwrap").hidden = false;
    if (oldIn) setTimeout(() => URL.revokeObjectURL(oldIn), 1000);
    $("inputnote").textContent = `what the network saw: ${head.input_shape.join("x")}${head.face_crop ? " (face crop)" : ""}, live`;
    liveNote("");
    const k = live.videoWidth / head.size[1];  // the video's width on screen (fixed by the stylesheet)
    const place = (el, b) => Object.assign(el.style, { left: `${b[0] * k}px`, top: `${b[1] * k}px`, width: `${b[2] * k}px`, height: `${b[3] * k}px` });
    if (head.face) { place($("livebox"), head.face); $("livebox").hidden = false; } else $("livebox").hidden = true;
    if (parts.heat) {  // the CAM on the video, over the part of the frame the network saw
      const [heatSrc, oldHeat] = objectURL("heat", parts.heat);
      $("liveheat").src = heatSrc; place($("liveheat"), head.seen); $("liveheat").hidden = false;
      if (oldHeat) setTimeout(() => URL.revokeObjectURL(oldHeat), 1000);
    } else $("liveheat").hidden = true;
    if (parts.cam && head.cam) {
      const [camSrc, oldCam] = objectURL("cam", parts.cam);
      $("camimg").src = camSrc; $("camimg").hidden = false;
      if (oldCam) setTimeout(() => URL.revokeObjectURL(oldCam), 1000);
      const r = head.cam;
      $("caminfo").textContent = `live: ${r.method} at ${r.layer} ${r.layer_name} for "${r.class}"` + (r.probability !== null ? ` (p = ${pct(r.probability)})` : "");
    } else if (!S.cam) { $("camimg").hidden = true; }
    status(`live: ${v.label} · ${head.ms.forward !== undefined ? `forward ${Math.round(head.ms.forward)} ms` : ""}`);
  }
  async function freeze() {  // the frame on screen becomes an upload: every view of an image applies to it
    const shown = live.shown;
    if (!live.on || !shown) { status("freeze: no frame drawn yet", true); return; }
    const t = new Date(), pad = (x) => String(x).padStart(2, "0");
    const name = `camera ${pad(t.getHours())}-${pad(t.getMinutes())}-${pad(t.getSeconds())}.png`;
    stopLive(null, true);
    view = null;
    const c = new OffscreenCanvas(shown.pixels.width, shown.pixels.height);  // the frame's own pixels, lossless
    c.getContext("2d").putImageData(shown.pixels, 0, 0);
    const blob = await c.convertToBlob({ type: "image/png" });
    if (!(await upload(new File([blob], name, { type: "image/png" })))) {  // refused: the view before comes back
      const why = $("status").textContent;
      if (S.image) await loadImage(S.image); else clearView("the frozen frame was refused");
      status(why, true);
    }
  }

  start().catch((e) => status(e.message, true));
})();

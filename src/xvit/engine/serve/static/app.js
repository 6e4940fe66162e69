// xvit serve: the page at GET /. Plain JavaScript, no external resources.
// Choose or drop a video: it plays, is posted to v1/predict with timeline=true, and the
// answer is drawn as a label timeline under the video and a top-5 bar chart beside it.
"use strict";

(function () {
  const TOPK = 5;
  // Colour-blind-friendly categorical palette (Okabe-Ito, then Tableau extras), dark enough
  // for white text.
  const PALETTE = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#7a5d00",
    "#56349e", "#b8004f", "#2f6f6f", "#8c564b", "#5c6b1f",
    "#1f4e99", "#a34400",
  ];

  const $ = (id) => document.getElementById(id);
  const els = {
    modelInfo: $("model-info"),
    dropZone: $("drop-zone"),
    fileInput: $("file-input"),
    fileName: $("file-name"),
    busy: $("busy"),
    summary: $("summary"),
    message: $("message"),
    video: $("video"),
    videoNote: $("video-note"),
    section: $("timeline-section"),
    timeline: $("timeline"),
    bands: $("bands"),
    playhead: $("playhead"),
    axis: $("axis"),
    tooltip: $("tooltip"),
    legend: $("legend"),
    videoTop: $("video-top"),
    videoTopEmpty: $("video-top-empty"),
  };

  const state = {
    objectUrl: null,
    controller: null,
    request: 0,
    result: null,
    duration: 0,
    spans: [], // [{left, right}] in seconds, one per band
    hovered: -1,
    colour: new Map(), // class index -> colour, for the classes leading some window
    maxUploadMb: null, // the server's --max-upload-mb, from v1/model
  };

  function pct(p) {
    return (100 * p).toFixed(1) + "%";
  }

  function seconds(s) {
    return s.toFixed(2) + " s";
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // ---- model information in the header -------------------------------------------------
  function describeModel(m) {
    const parts = [];
    const name = m.name || m.model;
    if (name) parts.push(["Model", String(name)]);
    let classes = m.classes !== undefined ? m.classes : m.num_classes;
    if (Array.isArray(classes)) classes = classes.length;
    if (classes !== undefined) parts.push(["Classes", String(classes)]);
    const frames = m.frames !== undefined ? m.frames : m.num_frames;
    if (frames !== undefined) parts.push(["Frames", String(frames)]);
    let size = m.input_size !== undefined ? m.input_size : m.img_size;
    if (Array.isArray(size)) size = size.slice(-2).join("×"); // [C, T, H, W] or [H, W]
    else if (typeof size === "number") size = size + "×" + size;
    if (size !== undefined) parts.push(["Input", String(size) + " px"]);
    return parts;
  }

  async function loadModel() {
    try {
      const response = await fetch("v1/model", { headers: { Accept: "application/json" } });
      const body = await response.json();
      if (!response.ok) throw new Error(body.error || "HTTP " + response.status);
      els.modelInfo.textContent = "";
      describeModel(body).forEach(([key, value], i) => {
        if (i) els.modelInfo.append(" · ");
        els.modelInfo.append(key + ": ");
        els.modelInfo.append(el("strong", "", value));
      });
      els.modelInfo.dataset.name = body.name || body.model || "";
      if (body.limits && typeof body.limits.max_upload_mb === "number") state.maxUploadMb = body.limits.max_upload_mb;
    } catch (err) {
      els.modelInfo.textContent = "Model information unavailable (" + err.message + ")";
    }
  }

  // ---- choosing / dropping a file -------------------------------------------------------
  function pick(file) {
    if (!file) return;
    els.fileName.textContent = file.name;
    play(file);
    analyse(file);
  }

  function play(file) {
    if (state.objectUrl) URL.revokeObjectURL(state.objectUrl);
    state.objectUrl = URL.createObjectURL(file);
    els.videoNote.hidden = true;
    els.video.hidden = false;
    els.video.src = state.objectUrl;
  }

  els.video.addEventListener("error", () => {
    if (!els.video.getAttribute("src")) return;
    els.video.hidden = true;
    els.videoNote.textContent = "This browser cannot play this file.";
    els.videoNote.hidden = false;
  });

  els.fileInput.addEventListener("change", () => {
    pick(els.fileInput.files[0]);
    els.fileInput.value = ""; // choosing the same file again posts it again
  });

  ["dragenter", "dragover"].forEach((type) =>
    els.dropZone.addEventListener(type, (event) => {
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      els.dropZone.classList.add("over");
    })
  );
  ["dragleave", "dragend"].forEach((type) =>
    els.dropZone.addEventListener(type, () => els.dropZone.classList.remove("over"))
  );
  els.dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    els.dropZone.classList.remove("over");
    const files = event.dataTransfer && event.dataTransfer.files;
    if (files && files.length) pick(files[0]);
  });
  // A file dropped next to the zone must not make the browser navigate away from the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  // ---- the request ----------------------------------------------------------------------
  function clearResult() {
    state.result = null;
    state.spans = [];
    els.section.hidden = true;
    els.bands.textContent = "";
    els.axis.textContent = "";
    els.legend.textContent = "";
    els.tooltip.hidden = true;
    els.videoTop.textContent = "";
    els.videoTopEmpty.hidden = false;
    els.summary.textContent = "";
    els.message.hidden = true;
    els.message.textContent = "";
  }

  function setBusy(on) {
    els.busy.hidden = !on;
    els.section.setAttribute("aria-busy", on ? "true" : "false");
    els.videoTop.setAttribute("aria-busy", on ? "true" : "false");
    document.body.classList.toggle("is-busy", on);
  }

  function headline(status, response) {
    if (status === 422) return "This file could not be read as a video.";
    if (status === 413) return "The file is larger than this server accepts.";
    if (status === 503) {
      const after = response && response.headers.get("Retry-After");
      return "The server is busy" + (after ? "; try again in " + after + " s." : "; try again shortly.");
    }
    if (status === 504) return "The server took too long on this video.";
    return "The server could not label this video (HTTP " + status + ").";
  }

  function showError(title, detail) {
    els.message.textContent = "";
    els.message.append(el("strong", "", title));
    if (detail) els.message.append(el("span", "detail", detail));
    els.message.hidden = false;
  }

  async function analyse(file) {
    if (state.controller) state.controller.abort();
    const controller = new AbortController();
    state.controller = controller;
    const request = ++state.request;
    clearResult();
    // Over the server's limit the upload would be refused (413) after sending it all.
    if (state.maxUploadMb !== null && file.size > state.maxUploadMb * 1048576) {
      showError(
        headline(413),
        file.name + " is " + (file.size / 1048576).toFixed(1) + " MB; this server accepts up to " +
          state.maxUploadMb + " MB (--max-upload-mb)."
      );
      return;
    }
    setBusy(true);
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("timeline", "true");
    form.append("topk", String(TOPK));
    try {
      const response = await fetch("v1/predict", {
        method: "POST",
        body: form,
        signal: controller.signal,
        headers: { Accept: "application/json" },
      });
      const text = await response.text();
      if (request !== state.request) return;
      let body = null;
      try {
        body = JSON.parse(text);
      } catch (err) {
        body = null;
      }
      if (!response.ok) {
        const detail = body && body.error ? body.error : text.trim().split("\n")[0];
        showError(headline(response.status, response), detail);
        return;
      }
      if (!body || !body.video || !Array.isArray(body.video.top)) {
        showError("The server's answer could not be read.", text.slice(0, 200));
        return;
      }
      render(body, file);
    } catch (err) {
      if (err.name === "AbortError" || request !== state.request) return;
      showError("Could not reach the server.", err.message);
    } finally {
      if (request === state.request) setBusy(false);
    }
  }

  // ---- drawing the answer ---------------------------------------------------------------
  function render(result, file) {
    state.result = result;
    const windows = Array.isArray(result.timeline) ? result.timeline : [];
    const palette = colours(windows);
    state.colour = palette.colour;
    renderTimeline(windows, result, palette);
    renderBars(result.video.top, palette.colour);
    const parts = [file.name];
    if (typeof result.duration_s === "number") parts.push(seconds(result.duration_s));
    if (typeof result.frames === "number") parts.push(result.frames + " frames");
    parts.push(windows.length + (windows.length === 1 ? " window" : " windows"));
    if (typeof result.elapsed_ms === "number") parts.push("answered in " + Math.round(result.elapsed_ms) + " ms");
    els.summary.textContent = parts.join(" · ");
  }

  // A class that is some window's top class keeps its timeline colour in the bar chart.
  function renderBars(top, colour) {
    els.videoTop.textContent = "";
    els.videoTopEmpty.hidden = top.length > 0;
    top.forEach((entry) => {
      const li = el("li");
      li.dataset.label = entry.label;
      li.dataset.index = String(entry.index);
      li.dataset.prob = String(entry.prob);
      const head = el("div", "bar-head");
      head.append(el("span", "bar-label", entry.label), el("span", "bar-value", pct(entry.prob)));
      const track = el("div", "bar-track");
      track.setAttribute("role", "presentation");
      const fill = el("div", "bar-fill");
      fill.style.width = Math.max(0, Math.min(1, entry.prob)) * 100 + "%";
      if (colour.has(entry.index)) fill.style.background = colour.get(entry.index);
      track.append(fill);
      li.setAttribute("aria-label", entry.label + ", " + pct(entry.prob));
      li.append(head, track);
      els.videoTop.append(li);
    });
  }

  function colours(windows) {
    const classes = new Map(); // index -> label of every top-1 class, ordered by index
    windows.forEach((w) => {
      if (w.top && w.top.length) classes.set(w.top[0].index, w.top[0].label);
    });
    const order = [...classes.keys()].sort((a, b) => a - b);
    const colour = new Map(order.map((c, i) => [c, PALETTE[i % PALETTE.length]]));
    return { colour, classes: order.map((c) => [c, classes.get(c)]) };
  }

  // Windows overlap (a stride shorter than a window): each band covers the part of the video
  // nearer to its window's centre than to its neighbours', so the bands tile the video.
  function spans(windows, duration) {
    const centres = windows.map((w) => (w.start_s + w.end_s) / 2);
    return windows.map((w, i) => {
      const left = i === 0 ? w.start_s : (centres[i - 1] + centres[i]) / 2;
      const right = i === windows.length - 1 ? w.end_s : (centres[i] + centres[i + 1]) / 2;
      return { left: Math.max(0, left), right: Math.min(duration, Math.max(left, right)) };
    });
  }

  function renderTimeline(windows, result, palette) {
    els.bands.textContent = "";
    els.axis.textContent = "";
    els.legend.textContent = "";
    if (!windows.length) {
      els.section.hidden = true;
      return;
    }
    const lastEnd = Math.max(...windows.map((w) => w.end_s));
    const duration = typeof result.duration_s === "number" && result.duration_s > 0 ? result.duration_s : lastEnd;
    state.duration = duration;
    state.spans = spans(windows, duration);
    const { colour, classes } = palette;

    windows.forEach((w, i) => {
      const top1 = w.top[0];
      const span = state.spans[i];
      const band = el("button", "band");
      band.type = "button";
      band.dataset.window = String(i);
      band.dataset.label = top1 ? top1.label : "";
      band.dataset.index = top1 ? String(top1.index) : "";
      band.style.left = (100 * span.left) / duration + "%";
      band.style.width = (100 * (span.right - span.left)) / duration + "%";
      band.style.background = top1 ? colour.get(top1.index) : "#888";
      band.tabIndex = i === 0 ? 0 : -1;
      band.setAttribute(
        "aria-label",
        "Window " + (i + 1) + " of " + windows.length + ", " + w.start_s.toFixed(2) + " to " +
          w.end_s.toFixed(2) + " seconds: " + (top1 ? top1.label + " " + pct(top1.prob) : "no label")
      );
      band.setAttribute("aria-describedby", "tooltip");
      band.title = "";
      els.bands.append(band);
    });

    classes.forEach(([index, label]) => {
      const li = el("li");
      li.dataset.label = label;
      const swatch = el("span", "swatch");
      swatch.style.background = colour.get(index);
      li.append(swatch, el("span", "", label));
      els.legend.append(li);
    });

    ticks(duration).forEach((t, i, all) => {
      const tick = el("span", i === 0 ? "first" : i === all.length - 1 ? "last" : "", t.toFixed(t < 10 ? 1 : 0) + " s");
      tick.style.left = (100 * t) / duration + "%";
      els.axis.append(tick);
    });

    els.section.hidden = false;
    movePlayhead();
  }

  function ticks(duration) {
    const steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600];
    const step = steps.find((s) => duration / s <= 10) || duration / 10;
    const out = [];
    for (let t = 0; t < duration - step * 0.35; t += step) out.push(Math.round(t * 1000) / 1000);
    out.push(duration);
    return out;
  }

  // ---- the tooltip with a window's top-5 -------------------------------------------------
  function showWindow(i) {
    const windows = state.result && state.result.timeline;
    if (!windows || !windows[i]) return;
    const w = windows[i];
    const tip = els.tooltip;
    tip.textContent = "";
    tip.dataset.window = String(i);
    tip.append(
      el(
        "div",
        "when",
        "Window " + (i + 1) + " of " + windows.length + " · " + w.start_s.toFixed(2) + "–" +
          w.end_s.toFixed(2) + " s · frames " + w.start_frame + "–" + (w.end_frame - 1)
      )
    );
    const list = el("ol");
    w.top.forEach((entry) => {
      const li = el("li");
      li.dataset.label = entry.label;
      li.dataset.prob = String(entry.prob);
      const mini = el("div", "mini");
      const fill = el("span");
      fill.style.width = Math.max(0, Math.min(1, entry.prob)) * 100 + "%";
      if (state.colour.has(entry.index)) fill.style.background = state.colour.get(entry.index);
      mini.append(fill);
      li.append(el("span", "name", entry.label), mini, el("span", "pct", pct(entry.prob)));
      list.append(li);
    });
    tip.append(list);
    tip.hidden = false;
    // Under the band, kept inside the section.
    const band = els.bands.children[i];
    const section = els.section.getBoundingClientRect();
    const box = band.getBoundingClientRect();
    const width = tip.offsetWidth;
    const centre = box.left + box.width / 2 - section.left;
    const left = Math.max(0, Math.min(section.width - width, centre - width / 2));
    tip.style.left = left + "px";
    // Under the timeline, or over it when the window has no room below.
    const below = els.timeline.offsetTop + els.timeline.offsetHeight + 6;
    const fits = section.top + below + tip.offsetHeight <= window.innerHeight;
    tip.style.top = (fits ? below : els.timeline.offsetTop - tip.offsetHeight - 6) + "px";
  }

  function hideWindow() {
    els.tooltip.hidden = true;
  }

  function bandOf(node) {
    return node && node.closest ? node.closest(".band") : null;
  }

  function focusBand(i) {
    const bands = els.bands.children;
    if (!bands.length) return;
    const j = Math.max(0, Math.min(bands.length - 1, i));
    for (const b of bands) b.tabIndex = -1;
    bands[j].tabIndex = 0;
    bands[j].focus();
  }

  function seek(i) {
    const span = state.spans[i];
    if (!span || els.video.hidden) return;
    try {
      els.video.currentTime = span.left;
    } catch (err) {
      // not seekable yet: nothing to do
    }
    movePlayhead(span.left);
  }

  els.bands.addEventListener("focusin", (event) => {
    const band = bandOf(event.target);
    if (!band) return;
    for (const b of els.bands.children) b.tabIndex = b === band ? 0 : -1;
    band.classList.add("active");
    showWindow(Number(band.dataset.window));
  });
  els.bands.addEventListener("focusout", (event) => {
    const band = bandOf(event.target);
    if (band) band.classList.remove("active");
    if (state.hovered >= 0) showWindow(state.hovered);
    else hideWindow();
  });
  els.bands.addEventListener("mouseover", (event) => {
    const band = bandOf(event.target);
    if (!band) return;
    state.hovered = Number(band.dataset.window);
    showWindow(state.hovered);
  });
  els.bands.addEventListener("mouseleave", () => {
    state.hovered = -1;
    const focused = bandOf(document.activeElement);
    if (focused && els.bands.contains(focused)) showWindow(Number(focused.dataset.window));
    else hideWindow();
  });
  els.bands.addEventListener("click", (event) => {
    const band = bandOf(event.target);
    if (band) seek(Number(band.dataset.window));
  });
  els.bands.addEventListener("keydown", (event) => {
    const band = bandOf(event.target);
    if (!band) return;
    const i = Number(band.dataset.window);
    const last = els.bands.children.length - 1;
    const moves = { ArrowRight: i + 1, ArrowDown: i + 1, ArrowLeft: i - 1, ArrowUp: i - 1, Home: 0, End: last };
    if (event.key in moves) {
      event.preventDefault();
      focusBand(moves[event.key]);
    } else if (event.key === "Escape") {
      hideWindow();
    }
  });

  // ---- the playhead ---------------------------------------------------------------------
  function movePlayhead(at) {
    if (!state.duration) return;
    const t = typeof at === "number" ? at : els.video.currentTime || 0;
    const x = Math.max(0, Math.min(1, t / state.duration));
    els.playhead.style.left = 100 * x + "%";
  }

  let frame = 0;
  function follow() {
    movePlayhead();
    frame = els.video.paused || els.video.ended ? 0 : requestAnimationFrame(follow);
  }
  els.video.addEventListener("play", () => {
    if (!frame) frame = requestAnimationFrame(follow);
  });
  ["timeupdate", "seeked", "loadedmetadata"].forEach((type) => els.video.addEventListener(type, () => movePlayhead()));
  window.addEventListener("resize", () => {
    const focused = bandOf(document.activeElement);
    if (!els.tooltip.hidden && focused) showWindow(Number(focused.dataset.window));
  });

  loadModel();
})();

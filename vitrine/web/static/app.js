// Vitrine web UI: plain JavaScript over the HTTP API, no build step. Routes live in the URL hash,
// so a search can be shared and reloaded: #/search?q=...&c=...&f=colour:Black&min=&max=&o=
"use strict";

const main = document.getElementById("main");
const PAGE = 24;
let searchImage = null; // the query photo (a File), kept while the user refines the search

// -- helpers -------------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function apiKey() { return localStorage.getItem("vitrine.key") || ""; }

async function api(path, { method = "GET", json, form } = {}) {
  const headers = {};
  if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
  let body;
  if (json !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(json); }
  if (form !== undefined) body = form;
  const response = await fetch(path, { method, headers, body });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const e = data.error || {};
    throw new Error(`${e.message || response.statusText}${e.field ? ` (${e.field})` : ""}`);
  }
  return data;
}

function toast(message) {
  const t = document.getElementById("toast");
  t.textContent = message;
  t.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove("show"), 4000);
}

function price(p) { return p === null || p === undefined ? "" : `${Number(p).toFixed(2)}`; }

function parseHash() {
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query) };
}

function go(path, params) {
  const q = params && params.toString();
  location.hash = `#${path}${q ? `?${q}` : ""}`;
}

async function collections() {
  try { return await api("/collections"); } catch (e) { return []; }
}

function collectionPicker(selected, list, { all = true, id = "collection" } = {}) {
  return el("select", { id, name: "collection" },
    all ? el("option", { value: "", text: "All collections" }) : null,
    list.map((c) => el("option", { value: c.name, selected: c.name === selected, text: `${c.name} (${c.products})` })));
}

async function waitForJob(id, onUpdate) {
  for (;;) {
    const job = await api(`/jobs/${id}`);
    onUpdate(job);
    if (["COMPLETE", "FAILED", "CANCELLED"].includes(job.state)) return job;
    await new Promise((r) => setTimeout(r, 500));
  }
}

function progressView(job) {
  const share = job.total ? Math.round((100 * job.done) / job.total) : 0;
  const eta = job.eta_s ? `, about ${Math.ceil(job.eta_s)} s left` : "";
  return el("div", {},
    el("p", { text: `${job.kind} ${job.state}: ${job.done} / ${job.total}${eta}` }),
    el("div", { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100,
                "aria-valuenow": share, "aria-label": `${job.kind} progress` },
       el("span", { style: `width:${share}%` })));
}

function card(hit) {
  const top = Math.max(0, Math.min(1, hit.score));
  const href = `#/product/${encodeURIComponent(hit.collection)}/${encodeURIComponent(hit.id)}`;
  // A product shown as one of its variants shows that variant's photo; otherwise the photo that matched.
  const photo = hit.variant ? hit.main_image_url : hit.matched_image_url || hit.main_image_url;
  return el("li", { class: "card" },
    el("a", { href },
      photo ? el("img", { src: photo, alt: hit.title, loading: "lazy" }) : null,
      el("div", { class: "body" },
        el("div", { class: "title", text: hit.title }, hit.pinned ? el("span", { class: "badge", text: "Featured" }) : null),
        el("div", { class: "meta", text: [hit.colour, hit.category].filter(Boolean).join(" · ") }),
        el("div", { text: price(hit.price) }),
        hit.variant ? el("div", { class: "meta variant", text: `${Object.values(hit.variant.options).join(" / ")}${hit.variants > 1 ? ` · ${hit.variants} variants` : ""}` }) : null,
        hit.score == null ? null : el("div", { class: "score", title: `score ${hit.score.toFixed(3)}` }, el("span", { style: `width:${top * 100}%` })),
        hit.score == null ? null : el("div", { class: "meta", text: `score ${hit.score.toFixed(3)}${hit.matched_image_position ? ` · matched photo ${hit.matched_image_position + 1}` : ""}` }))));
}

// -- search --------------------------------------------------------------------------------------

// One chip of what a query was understood to ask: "price ≤ 50", "colour: Red", "spelling: hoddie → hoodie".
function chipText(kind, value) {
  if (kind === "price") {
    const { low, high, words } = value;
    const range = low != null && high != null ? `${price(low)}–${price(high)}` : high != null ? `≤ ${price(high)}` : `≥ ${price(low)}`;
    return `price ${range}${words ? ` (${words})` : ""}`;
  }
  if (Array.isArray(value)) return `${kind}: ${value.join(", ")}`;
  return `${kind}: ${Object.entries(value).map(([a, b]) => `${a} → ${b}`).join(", ")}`;
}

async function searchPage(params) {
  const list = await collections();
  const text = params.get("q") || "";
  const offset = Number(params.get("o") || 0);
  const filters = params.getAll("f");
  const ignored = params.getAll("x"); // kinds of understanding the shopper took back (chips removed)
  const alpha = params.get("a") || "0.5";

  const input = el("input", { type: "text", id: "q", name: "q", value: text, placeholder: "red summer dress", autocomplete: "off", list: "suggestions" });
  const picker = collectionPicker(params.get("c") || "", list);
  // Search-as-you-type: completions from the collection's categories, words and titles (GET /suggest).
  const suggestions = el("datalist", { id: "suggestions" });
  let typing = null;
  input.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(async () => {
      const q = input.value.trim();
      if (!q) { suggestions.replaceChildren(); return; }
      const p = new URLSearchParams({ q, limit: "8" });
      if (picker.value) p.set("collection", picker.value);
      try {
        const found = await api(`/suggest?${p}`);
        if (input.value.trim() === q) suggestions.replaceChildren(...found.suggestions.map((s) => el("option", { value: s.text, label: s.kind })));
      } catch { /* suggestions are a nicety: the search box works without them */ }
    }, 80);
  });
  const fileInput = el("input", { type: "file", id: "photo", accept: "image/*", hidden: true });
  const preview = el("span", { id: "photo-preview" });
  const drop = el("div", { class: "drop", tabindex: 0, role: "button", "aria-label": "Search by photo: click, drop or paste an image" },
    "Photo: click, drop or paste", preview);
  const slider = el("input", { type: "range", id: "alpha", min: 0, max: 1, step: 0.1, value: alpha });
  const alphaBox = el("div", { hidden: !(text && searchImage) }, el("label", { for: "alpha", text: "Photo ↔ words" }), slider);
  const min = el("input", { type: "number", id: "min", min: 0, step: "any", value: params.get("min") || "", inputmode: "decimal" });
  const max = el("input", { type: "number", id: "max", min: 0, step: "any", value: params.get("max") || "", inputmode: "decimal" });
  const sort = el("select", { id: "sort", name: "sort" },
    [["relevance", "Best match"], ["price_asc", "Price: low to high"], ["price_desc", "Price: high to low"], ["newest", "Newest"]]
      .map(([value, label]) => el("option", { value, text: label, selected: (params.get("s") || "relevance") === value })));
  sort.addEventListener("change", () => submit(0));

  function showPreview() {
    preview.replaceChildren();
    if (searchImage) {
      preview.append(el("img", { src: URL.createObjectURL(searchImage), alt: "query photo" }),
        el("button", { type: "button", class: "secondary", onclick: (e) => { e.stopPropagation(); searchImage = null; submit(0); }, text: "Remove photo" }));
    }
    alphaBox.hidden = !(input.value.trim() && searchImage);
  }
  function take(file) { if (file && file.type.startsWith("image/")) { searchImage = file; showPreview(); submit(0); } }
  drop.addEventListener("click", () => fileInput.click());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); fileInput.click(); } });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); take(e.dataTransfer.files[0]); });
  fileInput.addEventListener("change", () => take(fileInput.files[0]));
  document.onpaste = (e) => { const f = [...(e.clipboardData?.files || [])][0]; if (f) take(f); };

  function state(newOffset, extraFilters, extraIgnored) {
    const p = new URLSearchParams();
    if (input.value.trim()) p.set("q", input.value.trim());
    // chips taken back stay off for these words; new words are read afresh
    for (const x of extraIgnored ?? (input.value.trim() === text ? ignored : [])) p.append("x", x);
    if (picker.value) p.set("c", picker.value);
    for (const f of extraFilters ?? filters) p.append("f", f);
    if (min.value) p.set("min", min.value);
    if (max.value) p.set("max", max.value);
    if (slider.value !== "0.5") p.set("a", slider.value);
    if (sort.value !== "relevance") p.set("s", sort.value);
    if (newOffset) p.set("o", String(newOffset));
    return p;
  }
  function submit(newOffset, extraFilters, extraIgnored) {
    const p = state(newOffset, extraFilters, extraIgnored);
    if (p.toString() === params.toString()) searchPage(p); else go("/search", p);
  }
  slider.addEventListener("change", () => submit(0));

  const form = el("form", { class: "query", role: "search", onsubmit: (e) => { e.preventDefault(); submit(0); } },
    el("div", {}, el("label", { for: "q", text: "Search" }), input, suggestions),
    el("div", {}, el("label", { for: "collection", text: "Collection" }), picker),
    el("div", {}, el("label", { for: "sort", text: "Sort" }), sort),
    el("button", { type: "submit", text: "Search" }));
  const results = el("div", { id: "results", "aria-live": "polite" });
  const facetsBox = el("aside", { class: "facets", "aria-label": "Filters" });
  main.replaceChildren(form, drop, fileInput, alphaBox, el("div", { class: "layout" }, facetsBox, results));
  showPreview();

  // No words and no photo: the collection itself, newest first (or as sorted), like a shop's front page.
  const options = {
    collection: picker.value || null, top_k: PAGE, offset, sort: sort.value,
    alpha: text && searchImage ? Number(slider.value) : null,
    filters: {}, ranges: {}, ignore_understood: ignored,
  };
  for (const f of filters) {
    const [field, value] = f.split(":");
    (options.filters[field] = options.filters[field] || []).push(value);
  }
  if (min.value || max.value) options.ranges.price = { gte: min.value ? Number(min.value) : null, lte: max.value ? Number(max.value) : null };
  results.append(el("p", { class: "meta", text: "Searching…" }));
  let response;
  try {
    if (searchImage) {
      const form = new FormData();
      form.append("image", searchImage);
      if (text) form.append("text", text);
      form.append("options", JSON.stringify(options));
      response = await api("/search/upload", { method: "POST", form });
    } else {
      response = await api("/search", { method: "POST", json: { text, ...options } });
    }
  } catch (e) {
    results.replaceChildren(el("p", { class: "error", role: "alert", text: e.message }));
    return;
  }
  for (const [field, counts] of Object.entries(response.facets)) {
    const box = el("fieldset", {}, el("legend", { text: field }));
    for (const [value, count] of Object.entries(counts).slice(0, 12)) {
      const key = `${field}:${value}`;
      const id = `facet-${field}-${value}`.replace(/[^a-zA-Z0-9-]/g, "_");
      const on = filters.includes(key);
      box.append(el("label", { for: id },
        el("input", { type: "checkbox", id, checked: on, onchange: () => submit(0, on ? filters.filter((f) => f !== key) : [...filters, key]) }),
        value, el("span", { class: "count", text: count })));
    }
    facetsBox.append(box);
  }
  facetsBox.append(el("fieldset", {}, el("legend", { text: "price" }),
    el("label", { for: "min", text: "from" }), min, el("label", { for: "max", text: "to" }), max,
    el("button", { type: "button", class: "secondary", onclick: () => submit(0), text: "Apply" })));
  const chips = el("div", { class: "chips", id: "understood", "aria-label": "What the search understood" },
    Object.entries(response.understood || {}).map(([kind, value]) =>
      el("span", { class: "chip", "data-kind": kind }, chipText(kind, value),
        el("button", { type: "button", class: "chip-remove", "aria-label": `Remove ${kind}`, title: "Take the words literally",
          onclick: () => submit(0, null, [...ignored, kind]), text: "×" }))));
  const grid = el("ul", { class: "grid", id: "hits" }, response.hits.map(card));
  if (response.search_id) { // a click tells the shop's analytics which result was chosen, and where it was
    grid.querySelectorAll(".card > a").forEach((a, i) => a.addEventListener("click", () => {
      fetch("/clicks", { method: "POST", keepalive: true, headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ search_id: response.search_id, product_id: response.hits[i].id, position: offset + i + 1 }) }).catch(() => {});
    }));
  }
  const pager = el("div", { class: "pager" },
    el("button", { type: "button", class: "secondary", disabled: offset === 0, onclick: () => submit(Math.max(0, offset - PAGE)), text: "Previous" }),
    el("span", { text: `${response.total ? offset + 1 : 0}–${offset + response.hits.length} of ${response.total}` }),
    el("button", { type: "button", class: "secondary", disabled: offset + PAGE >= response.total, onclick: () => submit(offset + PAGE), text: "Next" }));
  const browsing = !text && !searchImage;
  results.replaceChildren(chips, el("p", { class: "meta", text: `${browsing ? "All products: " : ""}${response.total} products · ${response.timing_ms.total.toFixed(0)} ms` }), grid, pager);
  results.dataset.hash = location.hash; // which search these results answer (tests and scripts wait on it)
}

// Searches per day as bars, click-through rate as a line (right axis, 0-100%): an inline SVG.
function dailyChart(daily) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = (tag, attrs, ...kids) => { const n = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v); n.append(...kids); return n; };
  const w = 600, h = 160, pad = 24;
  const most = Math.max(1, ...daily.map((d) => d.searches));
  const step = (w - 2 * pad) / Math.max(1, daily.length);
  const x = (i) => pad + i * step;
  const bars = daily.map((d, i) => svg("rect", { x: x(i) + 2, y: h - pad - (d.searches / most) * (h - 2 * pad), width: Math.max(2, step - 4), height: (d.searches / most) * (h - 2 * pad), class: "bar" },
    svg("title", {}, `${d.day}: ${d.searches} searches, ${d.zero_results} with no results, CTR ${(d.ctr * 100).toFixed(1)}%`)));
  const line = daily.map((d, i) => `${x(i) + step / 2},${h - pad - d.ctr * (h - 2 * pad)}`).join(" ");
  return svg("svg", { id: "analytics-chart", viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": "Searches and click-through rate per day" },
    svg("line", { x1: pad, y1: h - pad, x2: w - pad, y2: h - pad, class: "axis" }), ...bars,
    svg("polyline", { points: line, class: "ctr", fill: "none" }),
    svg("text", { x: pad, y: 14, class: "legend" }, `bars: searches per day (max ${most}) · line: click-through rate`),
    ...daily.map((d, i) => svg("text", { x: x(i) + step / 2, y: h - 6, class: "tick", "text-anchor": "middle" }, d.day.slice(5))));
}

// -- product -------------------------------------------------------------------------------------

async function productPage(collection, id) {
  main.replaceChildren(el("p", { text: "Loading…" }));
  let product;
  try {
    product = await api(`/collections/${encodeURIComponent(collection)}/products/${encodeURIComponent(id)}`);
  } catch (e) {
    main.replaceChildren(el("p", { class: "error", role: "alert", text: e.message }));
    return;
  }
  const attrs = el("dl", { class: "attrs" },
    ["category", "colour"].map((k) => [el("dt", { text: k }), el("dd", { text: product[k] || "—" })]),
    Object.entries(product.attributes).map(([k, v]) => [el("dt", { text: k }), el("dd", { text: Array.isArray(v) ? v.join(", ") : String(v) })]));
  const similar = el("ul", { class: "grid", id: "similar" });
  const completing = el("ul", { class: "grid", id: "complete-the-look" });
  main.replaceChildren(
    el("p", {}, el("a", { href: "#/search", text: "← Search" })),
    el("article", { class: "product" },
      el("div", { class: "photos" }, product.images.map((im, i) => el("img", { src: im.url, alt: `${product.title}, photo ${i + 1}` }))),
      el("div", {},
        el("h1", { text: product.title }),
        el("p", { class: "meta", text: `${collection} · ${product.id}` }),
        el("p", { text: price(product.price) }),
        attrs,
        product.variants.length ? variantTable(product.variants) : null,
        product.description ? el("p", { class: "description", text: product.description }) : null)),
    el("h2", { text: "Complete the look" }), completing,
    el("h2", { text: "More like this" }), similar);
  const base = `/collections/${encodeURIComponent(collection)}/products/${encodeURIComponent(id)}`;
  try {
    const response = await api(`${base}/similar`, { method: "POST", json: { top_k: 12, facets: [] } });
    similar.append(...response.hits.map(card));
  } catch (e) {
    similar.append(el("li", { class: "error", text: e.message }));
  }
  try { // items of other garment groups that go with this one (GET .../complete)
    const found = await api(`${base}/complete?limit=8`);
    completing.append(...found.items.map((item) => card({ ...item, collection, score: null, scores: {}, variants: 0, pinned: false,
      matched_image_url: null, matched_image_position: null, variant: null, category: `${item.group} · ${item.category}` })));
    if (!found.items.length) completing.append(el("li", { class: "meta", text: "Nothing in other garment groups here." }));
  } catch (e) {
    completing.append(el("li", { class: "error", text: e.message }));
  }
}

function variantTable(variants) {
  const names = [...new Set(variants.flatMap((v) => Object.keys(v.options)))];
  return el("table", { class: "variants" },
    el("caption", { text: `${variants.length} variants` }),
    el("thead", {}, el("tr", {}, [...names, "price", "in stock", "sku"].map((h) => el("th", { text: h })))),
    el("tbody", {}, variants.map((v) => el("tr", {},
      [...names.map((n) => v.options[n] || "—"), price(v.price), v.available === null ? "—" : v.available ? "yes" : "no", v.sku]
        .map((t) => el("td", { text: String(t) }))))));
}

// -- shop the look -------------------------------------------------------------------------------

async function lookPage(lookId) {
  const list = await collections();
  const picker = collectionPicker(list[0]?.name || "", list, { all: false, id: "look-collection" });
  const file = el("input", { type: "file", id: "look-photo", accept: "image/*" });
  const status = el("div", { id: "look-status", "aria-live": "polite" });
  const view = el("div", { id: "look-view" });
  async function start(e) {
    e.preventDefault();
    if (!file.files[0]) { status.replaceChildren(el("p", { class: "error", text: "Choose a photo first." })); return; }
    const form = new FormData();
    form.append("image", file.files[0]);
    if (picker.value) form.append("collection", picker.value);
    form.append("top_k", "4");
    try {
      const job = await api("/looks", { method: "POST", form });
      const done = await waitForJob(job.id, (j) => status.replaceChildren(progressView(j)));
      if (done.state !== "COMPLETE") throw new Error(done.error || done.state);
      go(`/look/${done.result.id}`);
    } catch (err) {
      status.replaceChildren(el("p", { class: "error", role: "alert", text: err.message }));
    }
  }
  main.replaceChildren(
    el("h1", { text: "Shop the look" }),
    el("form", { class: "row", onsubmit: start },
      el("div", {}, el("label", { for: "look-photo", text: "Street photo" }), file),
      el("div", {}, el("label", { for: "look-collection", text: "Match in" }), picker),
      el("button", { type: "submit", text: "Find the garments" })),
    status, view);
  if (lookId) await showLook(lookId, view);
}

async function showLook(lookId, view) {
  let look;
  try { look = await api(`/looks/${lookId}`); } catch (e) { view.replaceChildren(el("p", { class: "error", text: e.message })); return; }
  const stage = el("div", { class: "stage" });
  stage.append(el("img", { src: look.photo_url, alt: "the uploaded photo", draggable: "false", onload: () => untangleLabels(stage) }));
  const boxStyle = ([x0, y0, x1, y1]) => `left:${(100 * x0) / look.width}%;top:${(100 * y0) / look.height}%;width:${(100 * (x1 - x0)) / look.width}%;height:${(100 * (y1 - y0)) / look.height}%`;
  const shown = look.garments.filter((g) => !g.removed);  // one the shopper said is not a garment stays, marked
  for (const g of shown) {
    stage.append(el("div", { class: "box", style: boxStyle(g.box) }, el("span", { text: `${g.group}: ${g.labels.colour[0].value} ${g.labels.category[0].value}` })));
  }
  const drawn = drawOnLook(lookId, look, stage, boxStyle, () => showLook(lookId, view));
  const garments = shown.map((g) => {
    const category = el("input", { type: "text", id: `fix-${g.index}`, value: g.labels.category[0].value });
    return el("section", { class: "garment", "aria-label": `garment ${g.index + 1}: ${g.group}` },
      el("header", {},
        el("img", { src: g.crop_url, alt: `${g.group} crop` }),
        el("div", {},
          el("strong", { text: g.group }), " ",
          el("button", { type: "button", class: "link", "aria-label": `Remove garment ${g.index + 1}: not a ${g.group}`, text: "Not a garment",
            onclick: async () => {
              try { await api(`/looks/${lookId}/garments/${g.index}`, { method: "DELETE" }); toast("Removed"); showLook(lookId, view); } catch (err) { toast(err.message); }
            } }), " ",
          el("button", { type: "button", class: "link", "aria-label": `Redraw the box of garment ${g.index + 1}: ${g.group}`, text: "Redraw its box",
            onclick: () => { drawn.redraw(g); stage.scrollIntoView({ block: "nearest" }); } }),
          el("div", { class: "meta", text: Object.entries(g.labels).map(([k, v]) => `${k}: ${v[0].value} (${Math.round(v[0].confidence * 100)}%)`).join(" · ") }))),
      el("form", { class: "row", onsubmit: async (e) => {
        e.preventDefault();
        try {
          await api(`/looks/${lookId}/garments/${g.index}`, { method: "PATCH", json: { labels: { category: category.value } } });
          toast("Label corrected");
          showLook(lookId, view);
        } catch (err) { toast(err.message); }
      } },
        el("div", {}, el("label", { for: `fix-${g.index}`, text: "Category" }), category),
        el("button", { type: "submit", class: "secondary", text: "Correct" })),
      g.unmatched ? el("p", { class: "meta", text: `No matches: ${g.unmatched}` })
        : el("ul", { class: "grid" }, g.matches.map((m) => card({ ...m, main_image_url: `/collections/${encodeURIComponent(m.collection)}/products/${encodeURIComponent(m.id)}/images/0`, matched_image_url: null, matched_image_position: null }))));
  });
  view.replaceChildren(el("p", { class: "meta", text: look.reason || `${look.people} people, ${shown.length} garments` }),
    el("div", { class: "look" }, el("div", {}, stage, drawn.element), el("div", { id: "garments" }, garments)));
}

// Nested boxes (a coat and the top under it) start at nearly the same corner: a label that would cover one placed
// before it goes to the bottom of its box instead.
function untangleLabels(stage) {
  const placed = [];
  for (const span of stage.querySelectorAll(".box span")) {
    const r = span.getBoundingClientRect();
    if (placed.some((p) => r.left < p.right && p.left < r.right && r.top < p.bottom && p.top < r.bottom)) span.classList.add("below");
    placed.push(span.getBoundingClientRect());
  }
  stage.dataset.labels = "placed";
}

// A garment the look missed (a bag, often): the shopper drags a box around it on the photo, says what it is
// (or lets Vitrine read it), and it is added to the look, labelled and matched like the others.
function drawOnLook(lookId, look, stage, boxStyle, done) {
  const group = el("select", { id: "drawn-group" },
    el("option", { value: "", text: "let Vitrine read it" }),
    ["top", "bottom", "dress", "outerwear", "shoes", "bag"].map((g) => el("option", { value: g, text: g })));
  const form = el("form", { class: "row", id: "drawn", hidden: true, onsubmit: async (e) => {
    e.preventDefault();
    try {
      await api(`/looks/${lookId}/garments`, { method: "POST", json: { box, group: group.value || null } });
      toast("Garment added");
      done();
    } catch (err) { toast(err.message); }
  } },
    el("div", {}, el("label", { for: "drawn-group", text: "What you drew" }), group),
    el("button", { type: "submit", text: "Shop this garment" }));
  let box = null;
  let start = null;
  let drawing = false;  // off: the photo scrolls the page on a phone as any photo does
  let moving = null;  // the garment whose box is being redrawn, or null: a new garment
  const hint = el("p", { class: "meta", hidden: true });
  const setDrawing = (on, garment = null) => {
    drawing = on;
    moving = on ? garment : null;
    stage.classList.toggle("drawing-mode", on);
    toggle.setAttribute("aria-pressed", String(on && garment === null));
    hint.hidden = !on;
    hint.textContent = garment === null ? "Drag a box around it on the photo, then say what it is."
      : `Drag the new box of garment ${garment.index + 1} (${garment.group}) on the photo.`;
  };
  const toggle = el("button", { type: "button", class: "secondary", "aria-pressed": "false", text: "Draw a garment it missed",
    onclick: () => setDrawing(!(drawing && moving === null)) });
  const marker = el("div", { class: "drawing", hidden: true });
  stage.append(marker);
  const at = (e) => {
    const r = stage.getBoundingClientRect();
    const clamp = (v) => Math.min(1, Math.max(0, v));
    return [Math.round(clamp((e.clientX - r.left) / r.width) * look.width), Math.round(clamp((e.clientY - r.top) / r.height) * look.height)];
  };
  const around = (a, b) => [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])];
  stage.addEventListener("pointerdown", (e) => {
    if (!drawing) return;
    start = at(e);
    stage.setPointerCapture(e.pointerId);
    e.preventDefault();
  });
  stage.addEventListener("pointermove", (e) => {
    if (!start) return;
    marker.hidden = false;
    marker.setAttribute("style", boxStyle(around(start, at(e))));
  });
  stage.addEventListener("pointerup", (e) => {
    if (!start) return;
    const b = around(start, at(e));
    start = null;
    if (b[2] - b[0] < 8 || b[3] - b[1] < 8) { marker.hidden = true; return; }  // a click, not a box
    box = b;
    marker.setAttribute("style", boxStyle(b));
    if (moving !== null) {  // a garment's box redrawn: cut again, read again, matched again
      api(`/looks/${lookId}/garments/${moving.index}`, { method: "PATCH", json: { box } })
        .then(() => { toast("Box redrawn"); done(); }, (err) => toast(err.message));
      return;
    }
    form.hidden = false;
    group.focus();
  });
  return { element: el("div", { class: "draw" }, toggle, hint, form), redraw: (garment) => setDrawing(true, garment) };
}

// -- admin ---------------------------------------------------------------------------------------

async function adminPage() {
  const key = el("input", { type: "password", id: "api-key", value: apiKey(), autocomplete: "off" });
  const keyForm = el("form", { class: "row", onsubmit: (e) => { e.preventDefault(); localStorage.setItem("vitrine.key", key.value.trim()); toast("Key saved in this browser"); } },
    el("div", {}, el("label", { for: "api-key", text: "API key (for writes)" }), key), el("button", { type: "submit", text: "Save key" }));
  const table = el("tbody", {});
  function renderRows(list) {
    table.replaceChildren(...list.map((c) => el("tr", {},
      el("td", {}, el("a", { href: `#/search?c=${encodeURIComponent(c.name)}`, text: c.name })),
      el("td", { text: c.products }), el("td", { text: c.images }), el("td", { text: c.model_version || "base" }),
      el("td", {},
        el("button", { type: "button", class: "secondary", onclick: () => trainView(c.name), text: "Train" }), " ",
        el("button", { type: "button", class: "secondary", onclick: () => modelsView(c.name), text: "Models" }), " ",
        el("button", { type: "button", class: "secondary", "aria-label": `Analytics of ${c.name}`, onclick: () => analyticsView(c.name), text: "Analytics" }), " ",
        el("button", { type: "button", class: "secondary", "aria-label": `Rules of ${c.name}`, onclick: () => rulesView(c.name), text: "Rules" }), " ",
        el("button", { type: "button", class: "secondary", "aria-label": `Delete ${c.name}`, onclick: async () => {
          if (!confirm(`Delete collection ${c.name} and everything in it?`)) return;
          try { await api(`/collections/${encodeURIComponent(c.name)}`, { method: "DELETE" }); toast(`Deleted ${c.name}`); renderRows(await collections()); } catch (e) { toast(e.message); }
        }, text: "Delete" })))));
  }
  renderRows(await collections());
  const name = el("input", { type: "text", id: "new-name", pattern: "[a-z0-9][a-z0-9_-]{0,63}", placeholder: "shop" });
  const file = el("input", { type: "file", id: "catalog-file", accept: ".csv,.tsv,.json,.jsonl,.zip" });
  const jobBox = el("div", { id: "job", "aria-live": "polite" });
  const detail = el("div", { id: "detail" });
  const ingestForm = el("form", { class: "row", onsubmit: async (e) => {
    e.preventDefault();
    if (!name.value || !file.files[0]) { jobBox.replaceChildren(el("p", { class: "error", text: "Give a name and a catalog file." })); return; }
    const form = new FormData();
    form.append("file", file.files[0]);
    try {
      const job = await api(`/collections/${encodeURIComponent(name.value)}/ingest`, { method: "POST", form });
      const done = await waitForJob(job.id, (j) => jobBox.replaceChildren(progressView(j)));
      jobBox.append(reportView(done));
      renderRows(await collections());
    } catch (err) { jobBox.replaceChildren(el("p", { class: "error", role: "alert", text: err.message })); }
  } },
    el("div", {}, el("label", { for: "new-name", text: "Collection" }), name),
    el("div", {}, el("label", { for: "catalog-file", text: "Catalog (CSV, JSON, JSONL or a zip with photos)" }), file),
    el("button", { type: "submit", text: "Ingest" }));

  function reportView(job) {
    if (job.state !== "COMPLETE") return el("p", { id: "report", class: "error", role: "alert", text: `${job.state}: ${job.error || ""}` });
    const r = job.result;
    return el("div", { id: "report" },
      el("p", { text: `Added ${r.added}, updated ${r.updated}, unchanged ${r.unchanged}, failed ${r.failed}; ${r.images} photos.` }),
      r.problems.length ? el("table", {}, el("thead", {}, el("tr", {}, ["row", "id", "field", "problem"].map((h) => el("th", { text: h })))),
        el("tbody", {}, r.problems.slice(0, 50).map((p) => el("tr", {}, [p.row, p.id, p.field, p.message].map((v) => el("td", { text: v ?? "" })))))) : null);
  }

  async function trainView(collection) {
    detail.replaceChildren(el("h2", { text: `Train ${collection}` }));
    try {
      const job = await api(`/collections/${encodeURIComponent(collection)}/train`, { method: "POST", json: {} });
      const done = await waitForJob(job.id, (j) => detail.replaceChildren(el("h2", { text: `Train ${collection}` }), progressView(j)));
      if (done.state !== "COMPLETE") throw new Error(done.error || done.state);
      await modelsView(collection);
    } catch (e) { detail.append(el("p", { class: "error", role: "alert", text: e.message })); }
  }

  // Merchandising rules: the list with a remove button each, and a form to add one.
  async function rulesView(collection) {
    const path = `/collections/${encodeURIComponent(collection)}/rules`;
    let rules;
    try { rules = await api(path); } catch (e) { detail.replaceChildren(el("p", { class: "error", role: "alert", text: e.message })); return; }
    const field = (id, label, attrs = {}) => el("div", {}, el("label", { for: id, text: label }), el("input", { id, ...attrs }));
    const action = el("select", { id: "rule-action" }, ["pin", "boost", "bury", "hide"].map((a) => el("option", { value: a, text: a })));
    const status = el("p", { id: "rule-status", "aria-live": "polite" });
    const form = el("form", { class: "row", id: "rule-form", onsubmit: async (e) => {
      e.preventDefault();
      const value = (id) => document.getElementById(id).value.trim();
      const rule = { action: action.value };
      if (value("rule-query")) rule.query = value("rule-query");
      if (value("rule-product")) rule.product_id = value("rule-product");
      if (value("rule-position")) rule.position = Number(value("rule-position"));
      if (value("rule-where")) { const [f, ...v] = value("rule-where").split("="); rule.field = f.trim(); if (v.length) rule.value = v.join("=").trim(); }
      if (value("rule-weight")) rule.weight = Number(value("rule-weight"));
      try { await api(path, { method: "POST", json: rule }); await rulesView(collection); toast("Rule added"); }
      catch (err) { status.replaceChildren(el("span", { class: "error", role: "alert", text: err.message })); }
    } },
      el("div", {}, el("label", { for: "rule-action", text: "Action" }), action),
      field("rule-query", "Query (empty: every search)"), field("rule-product", "Product id"),
      field("rule-position", "Position", { type: "number", min: 1, max: 100 }), field("rule-where", "Where field=value"),
      field("rule-weight", "Weight", { type: "number", step: "any", min: 0, max: 1 }),
      el("button", { type: "submit", text: "Add rule" }));
    detail.replaceChildren(el("section", { id: "rules" }, el("h2", { text: `Rules of ${collection}` }),
      el("table", { id: "rules-table" }, el("thead", {}, el("tr", {}, ["action", "query", "what", "position / weight", ""].map((h) => el("th", { text: h })))),
        el("tbody", {}, rules.map((r) => el("tr", {},
          el("td", { text: r.action }), el("td", { text: r.query || "(every search)" }),
          el("td", { text: r.product_id || `${r.field}=${r.value ?? ""}` }), el("td", { text: r.position ?? r.weight ?? "" }),
          el("td", {}, el("button", { type: "button", class: "secondary", "aria-label": `Remove rule ${r.id}`, onclick: async () => {
            try { await api(`${path}/${r.id}`, { method: "DELETE" }); await rulesView(collection); } catch (err) { toast(err.message); }
          }, text: "Remove" })))))),
      form, status));
  }

  async function analyticsView(collection) {
    let r;
    try {
      r = await api(`/analytics?collection=${encodeURIComponent(collection)}&days=30`);
    } catch (e) { detail.replaceChildren(el("p", { class: "error", role: "alert", text: e.message })); return; }
    const rows = (list, cells) => el("tbody", {}, list.map((item) => el("tr", {}, cells(item).map((v) => el("td", { text: v ?? "" })))));
    detail.replaceChildren(el("section", { id: "analytics" },
      el("h2", { text: `Searches in ${collection}, last 30 days` }),
      el("p", { id: "analytics-summary", text: `${r.searches} searches, ${r.zero_results} with no results, ${r.clicks} clicks; click-through ${(r.ctr * 100).toFixed(1)}%${r.mean_click_position != null ? `, mean position of clicks ${r.mean_click_position}` : ""}` }),
      dailyChart(r.daily),
      el("h3", { text: "Top queries" }),
      el("table", { id: "top-queries" }, el("thead", {}, el("tr", {}, ["query", "searches", "clicks"].map((h) => el("th", { text: h })))),
        rows(r.top_queries, (q) => [q.query, q.searches, q.clicks])),
      el("h3", { text: "Queries with no results" }),
      el("table", { id: "no-result-queries" }, el("thead", {}, el("tr", {}, ["query", "searches"].map((h) => el("th", { text: h })))),
        rows(r.no_result_queries, (q) => [q.query, q.searches]))));
  }

  async function modelsView(collection) {
    const versions = await api(`/collections/${encodeURIComponent(collection)}/models`);
    detail.replaceChildren(el("h2", { text: `Models of ${collection}` }), el("table", { id: "models" },
      el("thead", {}, el("tr", {}, ["version", "held-out MRR (colour+category)", "held-out MRR (titles)", ""].map((h) => el("th", { text: h })))),
      el("tbody", {}, versions.map((v) => el("tr", {},
        el("td", { text: v.version + (v.active ? " (active)" : "") }),
        el("td", { text: v.heldout ? v.heldout.caption_mrr.toFixed(3) : "—" }),
        el("td", { text: v.heldout ? v.heldout.title_mrr.toFixed(3) : "—" }),
        el("td", {}, v.active ? null : el("button", { type: "button", class: "secondary", onclick: async () => {
          await api(`/collections/${encodeURIComponent(collection)}/models/active`, { method: "PUT", json: { version: v.version } });
          toast(`${collection} now uses ${v.version}`);
          modelsView(collection);
        }, text: "Use" })))))));
  }

  main.replaceChildren(
    el("h1", { text: "Admin" }),
    el("section", { class: "panel" }, keyForm),
    el("section", { class: "panel" }, el("h2", { text: "Collections" }),
      el("table", {}, el("thead", {}, el("tr", {}, ["name", "products", "photos", "model", ""].map((h) => el("th", { text: h })))), table)),
    el("section", { class: "panel" }, el("h2", { text: "Add a catalog" }), ingestForm, jobBox),
    detail);
}

// -- router --------------------------------------------------------------------------------------

async function route() {
  const { parts, params } = parseHash();
  const page = parts[0] || "search";
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.nav === page) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  document.onpaste = null;
  if (page === "product" && parts.length >= 3) await productPage(parts[1], parts[2]);
  else if (page === "look") await lookPage(parts[1]);
  else if (page === "admin") await adminPage();
  else await searchPage(params);
  document.title = `Vitrine · ${page}`;
}

window.addEventListener("hashchange", () => { route(); main.focus(); });
route();

// The plant-manager / QA dashboard: SPC p-chart, the audited miss / false-detection estimates and their trend,
// Pareto, per-line comparison, throughput, the challenger in shadow, the operating point and models, refreshed
// every 10 s in place (charts update with update('none'), so nothing flickers).
import {
  ApiError, COLORS, api, currentUser, el, explainError, fillProductSelect, interval, localTime, num, panelMessage,
  pct, query, rateFigure, setChartDefaults, startSession, trustFigures, upsertChart,
} from "./common.js";

const REFRESH_MS = 10_000;
const MODELS_REFRESH_MS = 60_000; // the registry changes rarely and is slower to read than the stats
const $ = (id) => document.getElementById(id);
const LIMIT_STYLE = { pointStyle: "line", pointRadius: 10, pointHoverRadius: 10, pointBorderWidth: 2, borderWidth: 1.5 };
const CLOCK = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };

const state = {
  product: "", bucket: "hour", line: "", windowHours: "168",
  timer: null, busy: false, again: false, modelsAt: 0, modelsFor: null, curveAt: 0, curveFor: null, buckets: [], lines: {},
};

function readUrl() {
  const match = location.pathname.match(/^\/products\/([^/]+)\/?$/);
  const params = new URLSearchParams(location.search);
  state.product = match ? decodeURIComponent(match[1]) : "";
  state.bucket = params.get("bucket") || "hour";
  state.line = params.get("line") || "";
  state.windowHours = params.has("window") ? params.get("window") : "168";
  $("bucket-select").value = state.bucket;
  $("window-select").value = state.windowHours;
  // The selects must hold the URL's values before the lists arrive, or an early change would drop them.
  if (![...$("product-select").options].some((o) => o.value === state.product)) {
    fillProductSelect($("product-select"), [], state.product);
  }
  $("product-select").value = state.product;
  if (![...$("line-select").options].some((o) => o.value === state.line)) {
    $("line-select").append(el("option", { value: state.line }, state.line));
  }
  $("line-select").value = state.line;
}

function writeUrl() {
  const path = state.product ? `/products/${encodeURIComponent(state.product)}` : "/";
  const search = query({
    bucket: state.bucket === "hour" ? "" : state.bucket,
    line: state.line,
    window: state.windowHours === "168" ? undefined : state.windowHours || "all",
  });
  history.pushState(null, "", path + search);
}

function scopeText() {
  const parts = [state.product || "all products", state.line || "all lines"];
  const win = $("window-select").selectedOptions[0]?.textContent ?? "";
  return `${parts.join(" / ")}, ${win}`;
}

// Buckets are UTC on the server (shifts too), so their labels are UTC; ISO strings slice cleanly.
function bucketLabel(bucket) {
  const start = bucket.start.slice(5, 16).replace("T", " ");
  if (state.bucket === "day") return bucket.start.slice(0, 10);
  if (state.bucket === "shift") return `${start}–${bucket.end.slice(11, 16)}`;
  return start;
}

function drawPChart(stats) {
  const panel = $("panel-pchart");
  $("bucket-name").textContent = state.bucket;
  const buckets = stats.buckets || [];
  state.buckets = buckets;
  if (!stats.totals.n || !buckets.length) {
    panelMessage(panel, `no inspections yet (${scopeText()})`);
    return;
  }
  panelMessage(panel, null);
  const out = buckets.map((b) => Boolean(b.control?.out_of_control));
  const limit = (key) => buckets.map((b) => b.control?.[key] ?? null);
  upsertChart($("chart-pchart"), {
    type: "line",
    data: {
      labels: buckets.map(bucketLabel),
      datasets: [
        {
          label: "defect rate", data: buckets.map((b) => b.defect_rate), borderColor: COLORS.blue,
          pointBackgroundColor: out.map((o) => (o ? COLORS.red : COLORS.blue)),
          pointBorderColor: out.map((o) => (o ? COLORS.red : COLORS.blue)),
          pointRadius: out.map((o) => (o ? 7 : 3)), pointHoverRadius: 8, borderWidth: 2,
        },
        // Limits move with each bucket's n; 'middle' steps change halfway between points, where n changes.
        // A short dash marks each bucket's own limit, so they show even when there is a single bucket.
        { label: "center", data: limit("center"), borderColor: COLORS.grey, borderDash: [6, 4], ...LIMIT_STYLE },
        { label: "UCL", data: limit("ucl"), borderColor: COLORS.amber, stepped: "middle", ...LIMIT_STYLE },
        { label: "LCL", data: limit("lcl"), borderColor: COLORS.amber, stepped: "middle", borderDash: [2, 3], ...LIMIT_STYLE },
      ],
    },
    options: {
      interaction: { mode: "index", intersect: false },
      // offset: points sit mid-category, so a lone bucket is not glued to the axis.
      scales: { x: { offset: true }, y: { min: 0, suggestedMax: 0.1, ticks: { callback: (v) => pct(v, 0) } } },
      plugins: {
        tooltip: {
          callbacks: {
            label: (ctx) => {
              if (ctx.datasetIndex !== 0) return `${ctx.dataset.label} ${pct(ctx.parsed.y)}`;
              const b = state.buckets[ctx.dataIndex];
              return `defect rate ${pct(b.defect_rate)} (${b.n_defect} / ${b.n})`;
            },
          },
        },
      },
    },
  });
  const flagged = buckets.filter((b) => b.control?.out_of_control);
  $("ooc-list").replaceChildren(
    flagged.length
      ? el("strong", { class: "alarm" }, `${flagged.length} bucket(s) out of control: `)
      : el("span", { class: "ok" }, "All buckets within control limits."),
    ...flagged.map((b) => {
      const side = b.defect_rate > b.control.ucl ? `above UCL ${pct(b.control.ucl)}` : `below LCL ${pct(b.control.lcl)}`;
      return el("span", { class: "ooc-item" }, `${bucketLabel(b)} UTC: ${pct(b.defect_rate)} (${b.n_defect} / ${b.n}), ${side}`);
    }),
  );
}

function drawPareto(totals) {
  const panel = $("panel-pareto");
  const entries = Object.entries(totals.per_type).sort((a, b) => b[1] - a[1]);
  if (!totals.n) return panelMessage(panel, "no inspections yet");
  if (!entries.length) return panelMessage(panel, `no defects found (${scopeText()})`);
  panelMessage(panel, null);
  const total = entries.reduce((sum, [, count]) => sum + count, 0);
  let running = 0;
  const cumulative = entries.map(([, count]) => ((running += count) / total) * 100);
  upsertChart($("chart-pareto"), {
    type: "bar",
    data: {
      labels: entries.map(([name]) => name),
      datasets: [
        { type: "bar", label: "defects", data: entries.map(([, count]) => count), backgroundColor: COLORS.blue, yAxisID: "y", order: 2 },
        { type: "line", label: "cumulative %", data: cumulative, borderColor: COLORS.amber, backgroundColor: COLORS.amber, yAxisID: "y1", order: 1 },
      ],
    },
    options: {
      scales: {
        y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "count" } },
        y1: { position: "right", min: 0, max: 100, grid: { drawOnChartArea: false }, ticks: { callback: (v) => `${v} %` } },
      },
      plugins: { tooltip: { callbacks: { label: (ctx) => (ctx.datasetIndex ? `cumulative ${ctx.parsed.y.toFixed(1)} %` : `${ctx.parsed.y} defects`) } } },
    },
  });
}

function drawLines(byLine) {
  const panel = $("panel-lines");
  const entries = Object.entries(byLine);
  state.lines = byLine;
  if (!entries.length) return panelMessage(panel, "no inspections yet");
  panelMessage(panel, null);
  const colour = ([name]) => (state.line && name !== state.line ? COLORS.grey : COLORS.violet);
  upsertChart($("chart-lines"), {
    type: "bar",
    data: {
      labels: entries.map(([name, b]) => `${name} (n=${b.n})`),
      datasets: [{ label: "defect rate", data: entries.map(([, b]) => b.defect_rate), backgroundColor: entries.map(colour) }],
    },
    options: {
      scales: { y: { min: 0, suggestedMax: 0.1, ticks: { callback: (v) => pct(v, 0) } } },
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            label: (ctx) => {
              const b = Object.values(state.lines)[ctx.dataIndex];
              return `defect rate ${pct(b.defect_rate)}: ${b.n_defect} defects of n = ${b.n}`;
            },
          },
        },
      },
    },
  });
}

function drawTrust(totals) {
  const panel = $("panel-trust");
  if (!totals.n) return panelMessage(panel, "no inspections yet");
  panelMessage(panel, null);
  $("trust-body").replaceChildren(...trustFigures(totals));
}

// An estimate and its 95 % band as three datasets: the band's edges are drawn faintly and filled between.
function bandDatasets(name, colour, fill, rates) {
  const edge = { borderColor: fill, backgroundColor: fill, borderWidth: 1, pointRadius: 0, pointHitRadius: 0, spanGaps: false };
  return [
    { label: name, data: rates.map((r) => r.estimate), borderColor: colour, backgroundColor: colour, borderWidth: 2, pointRadius: 3, spanGaps: false },
    { label: `${name} 95 % low`, data: rates.map((r) => r.ci95?.[0] ?? null), fill: false, ...edge },
    { label: `${name} 95 % high`, data: rates.map((r) => r.ci95?.[1] ?? null), fill: "-1", ...edge },
  ];
}

function drawTrend(buckets) {
  const panel = $("panel-trend");
  $("trend-bucket-name").textContent = state.bucket;
  if (!buckets.length) return panelMessage(panel, `no inspections yet (${scopeText()})`);
  if (!buckets.some((b) => b.audit.n_audited)) return panelMessage(panel, "no audited frames yet: QA's audit queue is on the review page");
  const estimable = (a) => a.miss_rate.estimate !== null || a.false_detection_rate.estimate !== null;
  if (!buckets.some((b) => estimable(b.audit))) return panelMessage(panel, `no ${state.bucket} has enough audited frames for an estimate yet`);
  panelMessage(panel, null);
  const audits = buckets.map((b) => b.audit);
  upsertChart($("chart-trend"), {
    type: "line",
    data: {
      labels: buckets.map(bucketLabel),
      datasets: [
        ...bandDatasets("miss rate", COLORS.red, "rgba(255, 77, 79, 0.18)", audits.map((a) => a.miss_rate)),
        ...bandDatasets("false-detection rate", COLORS.amber, "rgba(245, 166, 35, 0.18)", audits.map((a) => a.false_detection_rate)),
      ],
    },
    options: {
      interaction: { mode: "index", intersect: false },
      scales: { x: { offset: true }, y: { min: 0, max: 1, ticks: { callback: (v) => pct(v, 0) } } },
      plugins: {
        legend: { labels: { filter: (item) => !item.text.includes("95 %") } },
        tooltip: {
          filter: (item) => item.datasetIndex % 3 === 0,
          callbacks: {
            label: (ctx) => {
              const audit = state.buckets[ctx.dataIndex].audit;
              const rate = ctx.datasetIndex ? audit.false_detection_rate : audit.miss_rate;
              return `${ctx.dataset.label} ${pct(rate.estimate)} (95 % CI ${interval(rate.ci95)}), ${audit.n_audited} audited`;
            },
          },
        },
      },
    },
  });
}

function fillLineSelect(byLine) {
  // Frames sent without a line are grouped as "(none)", which the API cannot filter on.
  const names = Object.keys(byLine).filter((name) => name !== "(none)");
  if (state.line && !names.includes(state.line)) names.push(state.line);
  const select = $("line-select");
  const wanted = ["", ...names].join("\n");
  if ([...select.options].map((o) => o.value).join("\n") !== wanted) {
    select.replaceChildren(el("option", { value: "" }, "all lines"), ...names.map((n) => el("option", { value: n }, n)));
  }
  select.value = state.line;
}

function startOfHour(ms) {
  return new Date(Math.floor(ms / 3_600_000) * 3_600_000).toISOString();
}

async function loadStats() {
  // From the start of the UTC hour the window reaches back to: the first hourly bucket is a whole hour (not a
  // sliver with a small n on the p-chart), and the server sums whole hours from its rollups without reading rows.
  const since = state.windowHours ? startOfHour(Date.now() - Number(state.windowHours) * 3_600_000) : "";
  const panels = ["panel-pchart", "panel-pareto", "panel-lines", "panel-trust", "panel-trend"].map($);
  try {
    const stats = await api(`/v1/stats${query({ product: state.product, line: state.line, since, bucket: state.bucket })}`);
    // The line comparison always shows every line, so a line filter needs the unfiltered figures too.
    const all = state.line ? await api(`/v1/stats${query({ product: state.product, since })}`) : stats;
    drawPChart(stats);
    drawPareto(stats.totals);
    drawTrust(stats.totals);
    drawTrend(stats.buckets || []);
    drawLines(all.by_line);
    fillLineSelect(all.by_line);
  } catch (error) {
    panels.forEach((panel) => panelMessage(panel, explainError(error), "error"));
    throw error;
  }
}

async function loadThroughput() {
  const panel = $("panel-throughput");
  let t;
  try {
    t = await api(`/v1/stats/throughput${query({ product: state.product, line: state.line, minutes: 60 })}`);
  } catch (error) {
    panelMessage(panel, explainError(error), "error");
    throw error;
  }
  if (!t.n) return panelMessage(panel, `no inspections yet in the last ${t.window_minutes} minutes`);
  panelMessage(panel, null);
  const figure = (title, value, testid) =>
    el("div", { class: "figure small", "data-testid": testid }, el("div", { class: "figure-title" }, title), el("div", { class: "figure-value" }, value));
  $("throughput-figures").replaceChildren(
    figure("now", `${num(t.frames_per_second, 1)} fps`, "fps-now"),
    figure("latency p50", `${num(t.latency_ms.p50, 1)} ms`, "latency-p50"),
    figure("p95", `${num(t.latency_ms.p95, 1)} ms`, "latency-p95"),
    figure("p99", `${num(t.latency_ms.p99, 1)} ms`, "latency-p99"),
    figure(`frames, ${t.window_minutes} min`, String(t.n), "frames-window"),
  );
  const minutes = t.per_minute;
  upsertChart($("chart-throughput"), {
    type: "bar",
    data: {
      labels: minutes.map((m) => new Date(m.start).toLocaleTimeString([], CLOCK)),
      datasets: [
        { type: "bar", label: "frames/s", data: minutes.map((m) => m.fps), backgroundColor: COLORS.green, yAxisID: "y", order: 2 },
        // Every minute has its mean (from the minute counts); only the newest frames' minutes have percentiles.
        { type: "line", label: "mean latency", data: minutes.map((m) => m.latency_mean_ms), borderColor: COLORS.grey, backgroundColor: COLORS.grey, borderDash: [4, 3], pointRadius: 0, yAxisID: "y1", order: 1, spanGaps: true },
        { type: "line", label: "p50 latency", data: minutes.map((m) => m.latency_p50_ms), borderColor: COLORS.blue, backgroundColor: COLORS.blue, pointRadius: 2, yAxisID: "y1", order: 1, spanGaps: true },
        { type: "line", label: "p95 latency", data: minutes.map((m) => m.latency_p95_ms), borderColor: COLORS.amber, backgroundColor: COLORS.amber, pointRadius: 2, yAxisID: "y1", order: 1, spanGaps: true },
      ],
    },
    options: {
      scales: {
        x: { ticks: { maxTicksLimit: 12 } },
        y: { beginAtZero: true, title: { display: true, text: "frames/s" } },
        y1: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: "latency ms" } },
      },
    },
  });
}

async function loadModels(force) {
  if (!force && state.modelsFor === state.product && Date.now() - state.modelsAt < MODELS_REFRESH_MS) return;
  const panel = $("panel-models");
  try {
    const products = await api("/v1/products");
    fillProductSelect($("product-select"), products, state.product);
    const shown = products.filter((p) => !state.product || p.product === state.product);
    if (!shown.length) return panelMessage(panel, "no products registered yet");
    const rows = await Promise.all(shown.map(async (p) => {
      let versions = [];
      try {
        versions = await api(`/v1/products/${encodeURIComponent(p.product)}/models`);
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 404)) throw error; // 404: no trained model yet
      }
      const champion = versions.find((v) => v.aliases.includes("champion"));
      // The frozen-test figures at the threshold the champion serves now (QA may have moved it since training);
      // a version trained before served scores were recorded has only its calibrated figures.
      const figures = champion ? champion.test_at_served_threshold ?? champion : null;
      const rate = (r, ci) => (figures ? `${pct(figures[r])} (${interval(figures[ci])})` : "—");
      return el("tr", { "data-product": p.product },
        el("td", {}, el("a", { href: `/products/${encodeURIComponent(p.product)}` }, p.product)),
        el("td", { "data-testid": "served-version" }, p.served_version ?? "not served"),
        el("td", {}, champion ? `v${champion.version}` : "—"),
        el("td", {}, p.threshold === null || p.threshold === undefined ? "—" : num(p.threshold, 3)),
        el("td", { "data-testid": "model-miss-rate" }, rate("miss_rate", "miss_rate_ci95")),
        el("td", {}, rate("false_detection_rate", "false_detection_rate_ci95")),
        el("td", {}, champion ? `${champion.n_defect ?? "?"} defective / ${champion.n_good ?? "?"} good` : "—"));
    }));
    panelMessage(panel, null);
    const head = ["product", "served", "champion", "threshold", "miss rate (95 % CI)", "false detections (95 % CI)", "frozen test set"];
    $("models-body").replaceChildren(el("table", { class: "models" },
      el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))), el("tbody", {}, rows)));
    state.modelsAt = Date.now();
    state.modelsFor = state.product;
  } catch (error) {
    panelMessage(panel, explainError(error), "error");
    throw error;
  }
}

// One model's QA-measured figures on the shadowed frames; testids are prefixed so they never collide with the
// live trust figures above.
function shadowRow(title, rates, prefix) {
  return el("div", { class: "shadow-row", "data-testid": `${prefix}-row` },
    el("div", { class: "shadow-model" }, title),
    el("div", { class: "figures" },
      rateFigure("Miss rate", rates.miss_rate, { testid: `${prefix}-miss-rate`, counted: "missed", base: "defective frames" }),
      rateFigure("False-detection rate", rates.false_detection_rate, { testid: `${prefix}-false-detection-rate`, counted: "flagged", base: "good frames" })));
}

async function loadShadow() {
  const panel = $("panel-shadow");
  panel.hidden = !state.product; // a challenger belongs to one product: the card is on the product page only
  if (!state.product) return;
  let s;
  try {
    s = await api(`/v1/products/${encodeURIComponent(state.product)}/shadow`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return panelMessage(panel, "no challenger in shadow (no registered model)");
    panelMessage(panel, explainError(error), "error");
    throw error;
  }
  if (s.challenger === null) return panelMessage(panel, "no challenger in shadow");
  panelMessage(panel, null);
  const served = s.served_versions.length ? s.served_versions.map((v) => `v${v}`).join(", ") : `v${s.served_version ?? "?"}`;
  const status = s.in_shadow_now ? "scoring every frame" : "not scoring now (not exported, or no longer the challenger)";
  const agreement = s.agreement;
  $("shadow-body").replaceChildren(
    el("p", { "data-testid": "shadow-versions", "data-challenger": s.challenger },
      `Challenger v${s.challenger} against champion ${served}: ${status}. `,
      s.since ? `Since ${localTime(s.since)}: ${s.frames_shadowed} frames scored in shadow, ${s.missing_shadow} skipped.` : "No frame scored in shadow yet."),
    el("div", { class: "figures" },
      el("div", { class: "figure", "data-testid": "shadow-agreement", "data-rate": agreement.rate ?? "", "data-k": agreement.k, "data-n": agreement.n },
        el("div", { class: "figure-title" }, "Verdicts agree"),
        el("div", { class: "figure-value" }, pct(agreement.rate)),
        el("div", { class: "figure-detail" }, agreement.n ? `95 % CI ${interval(agreement.ci95)}` : "95 % CI —"),
        el("div", { class: "figure-detail" }, `${agreement.k} of ${agreement.n} frames`))),
    el("p", { class: "muted" }, `On ${s.qa.n_reviewed} QA-checked frames (${s.qa.n_defective} defective, ${s.qa.n_good} good):`),
    shadowRow(`Champion ${served} (what the line got)`, s.qa.champion, "shadow-champion"),
    shadowRow(`Challenger v${s.challenger} (in shadow)`, s.qa.challenger, "shadow-challenger"),
    s.warning ? el("p", { class: "warning", "data-testid": "shadow-warning" }, `⚠ ${s.warning}`) : "",
  );
}

// The served version's test-split trade-off: the curve, the point it serves at, and the threshold each
// validation miss-rate target would give with its test rates (what `inspection models threshold` would do).
function costRow(row, validationDefects) {
  const target = pct(row.target_miss_rate, 0);
  if (row.refused) {
    const why = `refused: needs ≥ ${row.needs_defects} defective validation parts, has ${validationDefects ?? "?"}`;
    return el("tr", { class: "refused", "data-testid": "cost-row", "data-target": row.target_miss_rate },
      el("td", {}, target), el("td", { colspan: 4, title: row.refused }, why));
  }
  const rate = (p, key) => `${pct(p[key])} (${interval(p[`${key}_ci95`])})`;
  return el("tr", { "data-testid": "cost-row", "data-target": row.target_miss_rate, "data-threshold": row.threshold },
    el("td", {}, target),
    el("td", {}, num(row.threshold, 4)),
    el("td", {}, rate(row.validation, "miss_rate")),
    el("td", {}, rate(row.test, "miss_rate")),
    el("td", {}, rate(row.test, "false_detection_rate")));
}

async function loadOperatingCurve(force) {
  const panel = $("panel-operating");
  panel.hidden = !state.product; // a curve belongs to one product's served version: the product page only
  if (!state.product) return;
  if (!force && state.curveFor === state.product && Date.now() - state.curveAt < MODELS_REFRESH_MS) return;
  let c;
  try {
    c = await api(`/v1/products/${encodeURIComponent(state.product)}/operating-curve`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return panelMessage(panel, `no operating curve: ${error.message}`);
    panelMessage(panel, explainError(error), "error");
    throw error;
  }
  state.curveAt = Date.now();
  state.curveFor = state.product;
  if (!c.curve.length) return panelMessage(panel, "no operating curve (empty test split)");
  panelMessage(panel, null);
  const current = c.current?.test;
  const set = c.threshold_set;
  const source = set ? `set by ${set.set_by} at ${localTime(set.set_at)} (${set.rule}): ${set.reason}` : "as calibrated in training";
  $("operating-summary").replaceChildren(
    el("span", { "data-testid": "operating-threshold", "data-threshold": c.threshold ?? "" },
      `v${c.model_version} serves threshold ${num(c.threshold, 4)}, ${source}. `),
    current
      ? `On the ${c.n_defect} defective and ${c.n_good} good test parts: miss rate ${pct(current.miss_rate)} (${interval(current.miss_rate_ci95)}), false detections ${pct(current.false_detection_rate)} (${interval(current.false_detection_rate_ci95)}).`
      : "",
  );
  const xy = (p) => ({ x: p.false_detection_rate, y: p.miss_rate, threshold: p.threshold });
  upsertChart($("chart-operating"), {
    type: "scatter",
    data: {
      datasets: [
        { label: "test curve", data: c.curve.map(xy), showLine: true, borderColor: COLORS.blue, backgroundColor: COLORS.blue, pointRadius: 0, pointHitRadius: 6, borderWidth: 2, order: 2 },
        { label: "served threshold", data: current ? [xy(current)] : [], borderColor: COLORS.red, backgroundColor: COLORS.red, pointRadius: 7, pointHoverRadius: 9, order: 1 },
      ],
    },
    options: {
      scales: {
        x: { min: 0, max: 1, title: { display: true, text: "false-detection rate (good parts flagged)" }, ticks: { callback: (v) => pct(v, 0) } },
        y: { min: 0, max: 1, title: { display: true, text: "miss rate (defects passed)" }, ticks: { callback: (v) => pct(v, 0) } },
      },
      plugins: {
        tooltip: {
          callbacks: {
            label: (ctx) => `threshold ${num(ctx.raw.threshold, 4)}: miss ${pct(ctx.raw.y)}, false detections ${pct(ctx.raw.x)}`,
          },
        },
      },
    },
  });
  const head = ["validation miss target", "threshold", "validation miss rate", "test miss rate (95 % CI)", "test false detections (95 % CI)"];
  $("operating-costs").replaceChildren(
    el("table", { class: "models", "data-testid": "operating-costs" },
      el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))), el("tbody", {}, c.costs.map((row) => costRow(row, c.n_validation_defect)))),
    el("p", { class: "muted" },
      `Thresholds chosen on ${c.n_validation_defect ?? "?"} defective / ${c.n_validation_good ?? "?"} good validation parts, as `,
      el("code", {}, `inspection models threshold ${c.product} --miss-rate R`), " would choose them; rates on the frozen test split."));
}

async function refresh({ force = false } = {}) {
  if (!currentUser()) return;
  if (state.busy) {
    state.again = true; // a filter changed mid-refresh: run once more when this one ends
    return;
  }
  state.busy = true;
  $("review-link").href = `/review${query({ product: state.product })}`;
  const results = await Promise.allSettled([
    loadStats(), loadThroughput(), loadShadow(), loadOperatingCurve(force), loadModels(force),
  ]);
  state.busy = false;
  if (!currentUser()) return; // signed out (401) while loading
  const failed = results.some((r) => r.status === "rejected");
  const now = new Date().toLocaleTimeString([], { hourCycle: "h23" });
  $("last-updated").textContent = failed ? `partly updated ${now}, retrying` : `updated ${now}`;
  $("last-updated").dataset.updatedAt = String(Date.now());
  if (state.again) {
    state.again = false;
    refresh({ force: true });
  }
}

function onFilterChange() {
  state.product = $("product-select").value;
  state.bucket = $("bucket-select").value;
  state.line = $("line-select").value;
  state.windowHours = $("window-select").value;
  writeUrl();
  refresh({ force: true });
}

setChartDefaults();
readUrl();
for (const id of ["product-select", "bucket-select", "line-select", "window-select"]) $(id).addEventListener("change", onFilterChange);
window.addEventListener("popstate", () => {
  readUrl();
  refresh({ force: true });
});
startSession({
  onSignIn: async () => {
    clearInterval(state.timer);
    state.timer = setInterval(refresh, REFRESH_MS);
    await refresh({ force: true });
  },
  onSignOut: () => clearInterval(state.timer),
});

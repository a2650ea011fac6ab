// Shared by the dashboard and the review page: the API key, authenticated fetches, the sign-in form, and
// formatting. Every /v1 call carries X-API-Key; the pages themselves carry no data.

export const KEY_STORAGE = "inspection.apiKey";

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

let session = { me: null, onSignIn: null, onSignOut: null };

export function storedKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

/** Fetch a /v1 path with the key; JSON by default, the Response itself with {raw: true}. Throws ApiError. */
export async function api(path, { method = "GET", body, raw = false } = {}) {
  const headers = { "X-API-Key": storedKey() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try {
      detail = (await response.json()).detail ?? detail;
    } catch {
      // not JSON (a proxy's error page): keep the status line
    }
    // A key that stopped working mid-session (revoked, mistyped) sends the user back to the form at once.
    if (response.status === 401) showKeyForm("invalid key");
    throw new ApiError(response.status, typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return raw ? response : response.json();
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** Create an element; children are nodes or strings (always text: data never becomes markup). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function pct(fraction, digits = 1) {
  return fraction === null || fraction === undefined ? "—" : `${(100 * fraction).toFixed(digits)} %`;
}

export function interval(ci) {
  return ci && ci.length === 2 ? `${pct(ci[0])} – ${pct(ci[1])}` : "—";
}

export function num(value, digits = 0) {
  return value === null || value === undefined ? "—" : Number(value).toFixed(digits);
}

export function localTime(iso) {
  return iso ? new Date(iso).toLocaleString([], { dateStyle: "short", timeStyle: "medium", hourCycle: "h23" }) : "—";
}

/** Put a message in a panel's message slot and hide its body; `null` clears the message and shows the body. */
export function panelMessage(panel, text, kind = "info") {
  const slot = panel.querySelector(".panel-message");
  const body = panel.querySelector(".panel-body");
  slot.textContent = text || "";
  slot.className = `panel-message ${kind}`;
  slot.hidden = !text;
  if (body) body.hidden = Boolean(text);
}

/** The plain message for an API error shown in a panel: 403 names the role instead of the server's wording. */
export function explainError(error) {
  if (error instanceof ApiError && error.status === 403) {
    return `your role (${session.me?.role ?? "unknown"}) may not see this`;
  }
  if (error instanceof ApiError && error.status === 401) return "invalid key";
  return `could not load: ${error.message}`;
}

export function currentUser() {
  return session.me;
}

function byId(id) {
  return document.getElementById(id);
}

function showPageMessage(text) {
  const message = byId("page-message");
  message.textContent = text || "";
  message.hidden = !text;
}

/** Show the sign-in form (with an optional error) and hide the page's content. */
export function showKeyForm(error = "") {
  if (session.me) session.onSignOut?.();
  session.me = null;
  if (error) localStorage.removeItem(KEY_STORAGE); // a rejected key is useless; don't retry it on reload
  byId("content").hidden = true;
  byId("controls")?.setAttribute("hidden", "");
  byId("who").textContent = "";
  byId("sign-out").hidden = true;
  showPageMessage("");
  byId("key-message").textContent = error;
  byId("key-panel").hidden = false;
  byId("key-input").value = "";
  byId("key-input").focus();
}

async function signIn() {
  byId("key-panel").hidden = true;
  let me;
  try {
    me = await api("/v1/me");
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) showPageMessage(explainError(error));
    return;
  }
  session.me = me;
  byId("who").textContent = `${me.name} (${me.role})`;
  byId("sign-out").hidden = false;
  if (me.role === "camera") {
    showPageMessage("This is a camera key: cameras post frames and have no dashboard. Sign out and use a QA or manager key.");
    return;
  }
  showPageMessage("");
  byId("controls")?.removeAttribute("hidden");
  byId("content").hidden = false;
  await session.onSignIn(me);
}

/** Wire the key form and sign-out link, then sign in with the stored key (or ask for one). */
export function startSession({ onSignIn, onSignOut }) {
  session = { me: null, onSignIn, onSignOut };
  byId("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = byId("key-input").value.trim();
    if (!key) return;
    localStorage.setItem(KEY_STORAGE, key);
    signIn();
  });
  byId("sign-out").addEventListener("click", (event) => {
    event.preventDefault();
    localStorage.removeItem(KEY_STORAGE);
    showKeyForm("");
  });
  if (storedKey()) signIn();
  else showKeyForm("");
}

/** Options for a product <select>: "all products" (when allowed) plus the known ones, keeping the selection. */
export function fillProductSelect(select, products, selected, { allowAll = true } = {}) {
  const names = products.map((p) => p.product);
  if (selected && !names.includes(selected)) names.push(selected);
  const options = allowAll ? [el("option", { value: "" }, "all products")] : [];
  for (const name of names) options.push(el("option", { value: name }, name));
  select.replaceChildren(...options);
  select.value = selected || "";
}

// Chart colours for a dark control-room screen, shared so both pages look alike.
export const COLORS = {
  text: "#c9d4de",
  grid: "rgba(201, 212, 222, 0.12)",
  blue: "#4ea1ff",
  red: "#ff4d4f",
  amber: "#f5a623",
  green: "#3ecf8e",
  grey: "#9aa7b4",
  violet: "#b58cff",
};

/** Global Chart.js defaults: no animation (auto-refresh redraws without flicker) and readable text. */
export function setChartDefaults() {
  const Chart = window.Chart;
  Chart.defaults.animation = false;
  Chart.defaults.color = COLORS.text;
  Chart.defaults.borderColor = COLORS.grid;
  Chart.defaults.font.size = 13;
  Chart.defaults.maintainAspectRatio = false;
}

/**
 * Create a chart on the canvas, or update the existing one in place (same dataset order) with update('none'),
 * so a refresh never tears down and redraws the whole canvas.
 */
export function upsertChart(canvas, config) {
  const existing = window.Chart.getChart(canvas);
  if (!existing) return new window.Chart(canvas, config);
  existing.data.labels = config.data.labels;
  config.data.datasets.forEach((dataset, i) => {
    if (existing.data.datasets[i]) Object.assign(existing.data.datasets[i], dataset);
    else existing.data.datasets.push(dataset);
  });
  existing.data.datasets.length = config.data.datasets.length;
  existing.update("none");
  return existing;
}

/**
 * One figure of the QA-labelled counts (miss or false-detection rate): the rate, its 95 % interval and the k / n
 * behind it. data-rate / data-k / data-n carry the raw numbers so tests and scrapers need not parse the text.
 */
export function rateFigure(title, rate, { testid, counted, base, small = false }) {
  const detail = rate.n
    ? `${rate.k} ${counted} of ${rate.n} QA-checked ${base}`
    : `no QA-checked ${base} yet`;
  return el(
    "div",
    { class: small ? "figure small" : "figure", "data-testid": testid, "data-rate": rate.rate ?? "", "data-k": rate.k, "data-n": rate.n },
    el("div", { class: "figure-title" }, title),
    el("div", { class: "figure-value" }, pct(rate.rate)),
    el("div", { class: "figure-detail" }, rate.n ? `95 % CI ${interval(rate.ci95)}` : "95 % CI —"),
    el("div", { class: "figure-detail" }, detail),
  );
}

export function ppm(value) {
  return value === null || value === undefined ? "—" : `${Math.round(value).toLocaleString("en-US")} ppm`;
}

/** One audited estimate ({estimate, ci95, method}) as a headline figure; `format` is pct or ppm. */
export function estimateFigure(title, rate, { testid, format = pct, note }) {
  const [low, high] = rate.ci95 ?? [null, null];
  return el(
    "div",
    {
      class: "figure", "data-testid": testid, "data-estimate": rate.estimate ?? "", "data-low": low ?? "",
      "data-high": high ?? "", title: rate.method,
    },
    el("div", { class: "figure-title" }, title),
    el("div", { class: "figure-value" }, format(rate.estimate)),
    el("div", { class: "figure-detail" }, rate.ci95 ? `95 % CI ${format(low)} – ${format(high)}` : "95 % CI —"),
    el("div", { class: "figure-detail" }, rate.estimate === null ? "not estimable yet" : note),
  );
}

/** The audit's size in one line: how many drawn frames QA labelled, and what still waits. */
export function auditSize(audit) {
  const done = audit.n_selected ? ` (${pct(audit.n_audited / audit.n_selected, 0)})` : "";
  return el(
    "p",
    { class: "audit-size", "data-testid": "audit-size", "data-n-audited": audit.n_audited, "data-n-selected": audit.n_selected, "data-backlog": audit.backlog },
    `Audit: ${audit.n_audited} of ${audit.n_selected} drawn frames labelled${done}, backlog ${audit.backlog}`,
    audit.n_outside_design ? `; ${audit.n_outside_design} frames answered before audit sampling are left out` : "",
    ".",
  );
}

/**
 * A stats group's live rates: the audited estimates of the line (headline, with intervals, size and warning), then
 * the counts among the frames QA labelled, smaller and named as such: they are not the line's rates.
 */
export function trustFigures(block) {
  const { audit, qa } = block;
  return [
    el(
      "div",
      { class: "figures" },
      estimateFigure("Miss rate (defects passed)", audit.miss_rate, { testid: "audit-miss-rate", note: "audit estimate of the line" }),
      estimateFigure("False-detection rate (good flagged)", audit.false_detection_rate, {
        testid: "audit-false-detection-rate", note: "audit estimate of the line",
      }),
      estimateFigure("Escaped defects", audit.escaped_defects_ppm, { testid: "audit-escapes-ppm", format: ppm, note: "per million passed parts" }),
    ),
    auditSize(audit),
    audit.warning ? el("p", { class: "warning", "data-testid": "audit-warning" }, `⚠ ${audit.warning}`) : null,
    el(
      "div",
      { class: "qa-labelled", "data-testid": "qa-labelled" },
      el("div", { class: "qa-scope", "data-testid": "qa-scope" }, `Of the frames QA labelled: ${qa.n_reviewed} frames, not a random sample of the line`),
      el(
        "div",
        { class: "figures" },
        rateFigure("miss rate", qa.miss_rate, { testid: "qa-miss-rate", counted: "missed", base: "defective", small: true }),
        rateFigure("false-detection rate", qa.false_detection_rate, {
          testid: "qa-false-detection-rate", counted: "flagged", base: "good", small: true,
        }),
      ),
      qa.warning ? el("p", { class: "muted", "data-testid": "qa-warning" }, qa.warning) : null,
    ),
  ].filter(Boolean); // replaceChildren() would print a null as text
}

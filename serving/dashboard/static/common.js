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
 * One live QA figure (miss or false-detection rate): the rate, its 95 % interval and the k / n behind it.
 * data-rate / data-k / data-n carry the raw numbers so tests and scrapers need not parse the text.
 */
export function rateFigure(title, rate, { testid, counted, base }) {
  const detail = rate.n
    ? `${rate.k} ${counted} of ${rate.n} QA-checked ${base}`
    : `no QA-checked ${base} yet`;
  return el(
    "div",
    { class: "figure", "data-testid": testid, "data-rate": rate.rate ?? "", "data-k": rate.k, "data-n": rate.n },
    el("div", { class: "figure-title" }, title),
    el("div", { class: "figure-value" }, pct(rate.rate)),
    el("div", { class: "figure-detail" }, rate.n ? `95 % CI ${interval(rate.ci95)}` : "95 % CI —"),
    el("div", { class: "figure-detail" }, detail),
  );
}

/** The miss and false-detection figures of a stats block's "qa" part, with its warning shown plainly. */
export function trustFigures(qa) {
  return [
    el(
      "div",
      { class: "figures" },
      rateFigure("Miss rate (defects passed)", qa.miss_rate, {
        testid: "miss-rate",
        counted: "missed",
        base: "defective frames",
      }),
      rateFigure("False-detection rate (good flagged)", qa.false_detection_rate, {
        testid: "false-detection-rate",
        counted: "flagged",
        base: "good frames",
      }),
    ),
    qa.warning ? el("p", { class: "warning", "data-testid": "qa-warning" }, `⚠ ${qa.warning}`) : null,
  ].filter(Boolean); // replaceChildren() would print a null as text
}

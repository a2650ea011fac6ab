// The QA review page: the audit queue (frames drawn at random when answered, oldest first: their labels make the
// line's miss and false-detection estimates) above the frames worth a look (defect verdicts and low-confidence
// passes: labels there feed retraining, and the estimates only for frames that are in the audit), each card with
// the archived image and, for QA keys, "Confirm" / "Correct" buttons.
import {
  api, currentUser, el, explainError, fillProductSelect, localTime, panelMessage, pct, query, startSession, trustFigures,
} from "./common.js";

const PAGE_SIZE = 24;
const IMAGE_FETCHES = 4; // parallel image downloads: enough to fill a page fast without queueing behind cameras
const $ = (id) => document.getElementById(id);

const state = { product: "", includeReviewed: false, products: [] };

// The two lists on the page, each with its own paging, request counter (answers to an older request are dropped)
// and image URLs.
const lists = {
  audit: {
    panel: "panel-audit", cards: "audit-cards", info: "audit-page-info", prev: "audit-prev", next: "audit-next",
    offset: 0, blobUrls: [], seq: 0,
    params: () => ({ product: state.product, audit: true }),
    empty: () => "the audit queue is empty: every drawn frame is labelled",
  },
  look: {
    panel: "panel-cards", cards: "cards", info: "page-info", prev: "prev-page", next: "next-page",
    offset: 0, blobUrls: [], seq: 0,
    params: () => ({ product: state.product, review: true, has_feedback: state.includeReviewed ? "" : false }),
    empty: () => (state.includeReviewed ? "no inspections yet" : "nothing waiting for review"),
  },
};

function readUrl() {
  const params = new URLSearchParams(location.search);
  state.product = params.get("product") || "";
  state.includeReviewed = params.get("reviewed") === "1";
  $("include-reviewed").checked = state.includeReviewed;
  fillProductSelect($("product-select"), state.products, state.product);
}

function writeUrl() {
  history.replaceState(null, "", `/review${query({ product: state.product, reviewed: state.includeReviewed ? 1 : "" })}`);
  $("dashboard-link").href = state.product ? `/products/${encodeURIComponent(state.product)}` : "/";
}

async function loadProducts() {
  try {
    state.products = await api("/v1/products");
  } catch {
    state.products = []; // the selector still offers the URL's product; the panels report their own errors
  }
  fillProductSelect($("product-select"), state.products, state.product);
}

function defectTypes(product) {
  return state.products.find((p) => p.product === product)?.defect_types ?? [];
}

/** The stats strip: the audited estimates and the QA-labelled counts for the product, refreshed after each label. */
async function loadStrip() {
  const panel = $("panel-strip");
  $("strip-scope").textContent = state.product || "all products";
  try {
    const stats = await api(`/v1/stats${query({ product: state.product })}`);
    if (!stats.totals.n) return panelMessage(panel, "no inspections yet");
    panelMessage(panel, null);
    $("strip-body").replaceChildren(...trustFigures(stats.totals));
    $("strip-body").dataset.updatedAt = String(Date.now());
  } catch (error) {
    panelMessage(panel, explainError(error), "error");
  }
}

// Blob URLs hold the image bytes until revoked; revoke a list's old page before showing a new one.
function revokeImages(list) {
  list.blobUrls.forEach((url) => URL.revokeObjectURL(url));
  list.blobUrls = [];
}

/** Fetch the images with the key (an <img src> cannot send headers) and show them as blob: URLs. */
async function loadImages(list, images, seq) {
  const queue = [...images];
  const worker = async () => {
    for (let img = queue.shift(); img; img = queue.shift()) {
      try {
        const blob = await (await api(img.dataset.src, { raw: true })).blob();
        if (seq !== list.seq) return; // the page changed meanwhile: drop it
        const url = URL.createObjectURL(blob);
        list.blobUrls.push(url);
        img.src = url;
      } catch (error) {
        img.replaceWith(el("div", { class: "no-image" }, `image unavailable (${explainError(error)})`));
      }
    }
  };
  await Promise.all(Array.from({ length: IMAGE_FETCHES }, worker));
}

function imageSlot(url, what) {
  if (!url) return el("div", { class: "no-image" }, what === "frame" ? "frame not archived" : "no heatmap");
  return el("img", { "data-src": url, alt: `${what} of the inspected part`, "data-testid": `card-${what}` });
}

function labelLine(item) {
  return el(
    "div",
    { class: "qa-label", "data-testid": "feedback-label" },
    item.feedback_label ? ["QA label: ", el("span", { class: "label" }, item.feedback_label)] : "not reviewed yet",
  );
}

/** "Confirm" sends the model's own verdict as the label: its defect type, or "good" for a pass. */
function confirmLabel(item) {
  return item.verdict === "defect" ? item.defect_type : "good";
}

async function relabel(card, item, label) {
  const buttons = card.querySelectorAll("button, select");
  buttons.forEach((b) => (b.disabled = true));
  const message = card.querySelector(".card-error");
  message.textContent = "";
  try {
    const updated = await api(`/v1/inspections/${encodeURIComponent(item.id)}/feedback`, { method: "POST", body: { label } });
    Object.assign(item, updated);
    // A defect verdict drawn for the audit is in both lists: both of its cards show the label.
    for (const shown of document.querySelectorAll(`[data-testid=review-card][data-inspection-id="${CSS.escape(item.id)}"]`)) {
      shown.querySelector(".qa-label").replaceWith(labelLine(item));
      shown.classList.add("reviewed");
      shown.dataset.feedbackLabel = item.feedback_label;
    }
    // The QA user sees the live figures and the audit's progress move with the label just given.
    await Promise.all([loadStrip(), item.audit_selected ? loadAuditProgress() : null]);
  } catch (error) {
    message.textContent = explainError(error);
  } finally {
    buttons.forEach((b) => (b.disabled = false));
    const confirm = card.querySelector('[data-action="confirm"]');
    if (confirm && !confirmLabel(item)) confirm.disabled = true;
  }
}

function actions(card, item) {
  const confirmAs = confirmLabel(item);
  const confirm = el("button", {
    type: "button", "data-action": "confirm", "data-testid": "confirm",
    title: confirmAs ? `label it "${confirmAs}"` : "the model gave no defect type: use Correct",
    onclick: () => relabel(card, item, confirmAs),
  }, confirmAs ? `Confirm: ${confirmAs}` : "Confirm");
  confirm.disabled = !confirmAs;
  const types = ["good", ...defectTypes(item.product)];
  if (item.defect_type && !types.includes(item.defect_type)) types.push(item.defect_type);
  const select = el("select", { "data-action": "correct-select", "data-testid": "correct-select", "aria-label": "correct label" },
    types.map((t) => el("option", { value: t }, t)));
  // Preselect the opposite of the verdict: correcting a verdict usually means flipping it.
  select.value = item.verdict === "defect" ? "good" : types.find((t) => t !== "good") ?? "good";
  const save = el("button", { type: "button", "data-action": "correct-save", "data-testid": "correct-save",
    onclick: () => relabel(card, item, select.value) }, "Save");
  return el("div", { class: "actions" }, confirm, el("span", { class: "correct" }, el("span", { class: "muted" }, "Correct:"), select, save));
}

function card(item, canRelabel) {
  const node = el("article", {
    class: `card ${item.verdict}${item.feedback_label ? " reviewed" : ""}`, "data-testid": "review-card",
    "data-inspection-id": item.id, "data-verdict": item.verdict, "data-feedback-label": item.feedback_label ?? "",
    "data-received-at": item.received_at, "data-audit-selected": String(item.audit_selected),
  });
  const near = item.verdict === "pass" && inReview(item) ? " (low-confidence pass)" : "";
  const audited = item.audit_selected
    ? el("span", { class: "badge", "data-testid": "audit-badge", title: `drawn for the audit with probability ${item.audit_probability}` }, "audit")
    : "";
  node.append(
    el("div", { class: "images" }, imageSlot(item.image_url, "frame"), item.heatmap_url ? imageSlot(item.heatmap_url, "heatmap") : null),
    el("div", {}, el("span", { class: `verdict ${item.verdict}` }, item.verdict), item.defect_type ? ` · ${item.defect_type}` : "", near, " ", audited),
    el("div", { "data-testid": "probability" }, `p = ${item.defect_probability.toFixed(3)} vs threshold ${item.threshold.toFixed(3)}`),
    el("div", { class: "muted" }, `${item.product} · ${item.line_id ?? "no line"} · ${item.camera_id ?? "no camera"}`),
    el("div", { class: "muted" }, `${localTime(item.captured_at ?? item.received_at)} · model v${item.model_version}`),
    labelLine(item),
    canRelabel ? actions(node, item) : null,
    el("div", { class: "card-error", role: "alert" }),
  );
  return node;
}

// What the server calls a low-confidence pass (its review filter): a score within reach of the threshold.
const LOW_CONFIDENCE_FRACTION = 0.5;
function inReview(item) {
  return item.defect_probability >= LOW_CONFIDENCE_FRACTION * item.threshold;
}

function showAuditProgress(progress) {
  const box = $("audit-progress");
  box.dataset.backlog = progress.backlog;
  box.dataset.shareDone = progress.share_done ?? "";
  box.dataset.nSelected = progress.n_selected;
  box.dataset.nAudited = progress.n_audited;
  box.replaceChildren(
    el("strong", { "data-testid": "audit-backlog" }, `backlog ${progress.backlog}`),
    el("meter", { min: 0, max: 1, value: progress.share_done ?? 0, "aria-label": "share of the audit done" }),
    el("span", { "data-testid": "audit-share-done" },
      progress.n_selected ? `${pct(progress.share_done, 0)} done: ${progress.n_audited} of ${progress.n_selected} drawn frames labelled` : "no frame drawn for the audit yet"),
  );
}

/** The audit's progress alone (after a label), leaving the cards in place so QA keeps their place in the list. */
async function loadAuditProgress() {
  try {
    const page = await api(`/v1/inspections${query({ ...lists.audit.params(), limit: 1 })}`);
    showAuditProgress(page.audit);
  } catch {
    // the list's own load reports errors; a missed progress update is corrected by the next one
  }
}

async function loadList(list) {
  const seq = ++list.seq;
  const panel = $(list.panel);
  const canRelabel = currentUser()?.role === "qa";
  $("readonly-note").hidden = canRelabel;
  let page;
  try {
    page = await api(`/v1/inspections${query({ ...list.params(), limit: PAGE_SIZE, offset: list.offset })}`);
  } catch (error) {
    if (seq === list.seq) panelMessage(panel, explainError(error), "error");
    return;
  }
  if (seq !== list.seq) return;
  revokeImages(list);
  if (page.audit) showAuditProgress(page.audit);
  const cards = $(list.cards);
  if (!page.items.length) {
    cards.replaceChildren();
    panelMessage(panel, list.offset ? "no more frames" : list.empty());
  } else {
    panelMessage(panel, null);
    cards.replaceChildren(...page.items.map((item) => card(item, canRelabel)));
  }
  const last = list.offset + page.items.length;
  $(list.info).textContent = page.total ? `${list.offset + 1}–${last} of ${page.total}` : "";
  $(list.prev).disabled = list.offset === 0;
  $(list.next).disabled = last >= page.total;
  cards.dataset.loadedAt = String(Date.now());
  await loadImages(list, [...cards.querySelectorAll("img[data-src]")], seq);
}

function reload() {
  writeUrl();
  return Promise.all([loadStrip(), loadList(lists.audit), loadList(lists.look)]);
}

$("product-select").addEventListener("change", () => {
  state.product = $("product-select").value;
  lists.audit.offset = lists.look.offset = 0;
  reload();
});
$("include-reviewed").addEventListener("change", () => {
  state.includeReviewed = $("include-reviewed").checked;
  lists.look.offset = 0;
  loadList(lists.look);
  writeUrl();
});
$("reload").addEventListener("click", reload);
for (const list of Object.values(lists)) {
  $(list.prev).addEventListener("click", () => {
    list.offset = Math.max(0, list.offset - PAGE_SIZE);
    loadList(list);
  });
  $(list.next).addEventListener("click", () => {
    list.offset += PAGE_SIZE;
    loadList(list);
  });
}

readUrl();
startSession({
  onSignIn: async () => {
    await loadProducts();
    await reload();
  },
  onSignOut: () => {
    for (const list of Object.values(lists)) {
      revokeImages(list);
      $(list.cards).replaceChildren();
    }
  },
});

// The QA review page: frames worth a look (defect verdicts and low-confidence passes), with the archived image,
// and for QA keys "Confirm" / "Correct" buttons whose labels feed the live miss and false-detection rates.
import {
  api, currentUser, el, explainError, fillProductSelect, localTime, panelMessage, query, startSession, trustFigures,
} from "./common.js";

const PAGE_SIZE = 24;
const IMAGE_FETCHES = 4; // parallel image downloads: enough to fill a page fast without queueing behind cameras
const $ = (id) => document.getElementById(id);

const state = { product: "", includeReviewed: false, offset: 0, total: 0, products: [], blobUrls: [], seq: 0 };

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

/** The stats strip: live miss / false-detection rates for the selected product, refreshed after each relabel. */
async function loadStrip() {
  const panel = $("panel-strip");
  $("strip-scope").textContent = state.product || "all products";
  try {
    const stats = await api(`/v1/stats${query({ product: state.product })}`);
    if (!stats.totals.n) return panelMessage(panel, "no inspections yet");
    panelMessage(panel, null);
    $("strip-body").replaceChildren(...trustFigures(stats.totals.qa));
    $("strip-body").dataset.updatedAt = String(Date.now());
  } catch (error) {
    panelMessage(panel, explainError(error), "error");
  }
}

// Blob URLs hold the image bytes until revoked; revoke the old page's before showing a new one.
function revokeImages() {
  state.blobUrls.forEach((url) => URL.revokeObjectURL(url));
  state.blobUrls = [];
}

/** Fetch the images with the key (an <img src> cannot send headers) and show them as blob: URLs. */
async function loadImages(images, seq) {
  const queue = [...images];
  const worker = async () => {
    for (let img = queue.shift(); img; img = queue.shift()) {
      try {
        const blob = await (await api(img.dataset.src, { raw: true })).blob();
        if (seq !== state.seq) return; // the page changed meanwhile: drop it
        const url = URL.createObjectURL(blob);
        state.blobUrls.push(url);
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
    card.querySelector(".qa-label").replaceWith(labelLine(item));
    card.classList.add("reviewed");
    card.dataset.feedbackLabel = item.feedback_label;
    await loadStrip(); // the QA user sees the live figures move with the label just given
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
  });
  const near = item.verdict === "pass" ? " (low-confidence pass)" : "";
  node.append(
    el("div", { class: "images" }, imageSlot(item.image_url, "frame"), item.heatmap_url ? imageSlot(item.heatmap_url, "heatmap") : null),
    el("div", {}, el("span", { class: `verdict ${item.verdict}` }, item.verdict), item.defect_type ? ` · ${item.defect_type}` : "", near),
    el("div", { "data-testid": "probability" }, `p = ${item.defect_probability.toFixed(3)} vs threshold ${item.threshold.toFixed(3)}`),
    el("div", { class: "muted" }, `${item.product} · ${item.line_id ?? "no line"} · ${item.camera_id ?? "no camera"}`),
    el("div", { class: "muted" }, `${localTime(item.captured_at ?? item.received_at)} · model v${item.model_version}`),
    labelLine(item),
    canRelabel ? actions(node, item) : null,
    el("div", { class: "card-error", role: "alert" }),
  );
  return node;
}

async function loadCards() {
  const seq = ++state.seq; // answers to an older request (fast paging) are ignored
  const panel = $("panel-cards");
  const canRelabel = currentUser()?.role === "qa";
  $("readonly-note").hidden = canRelabel;
  let page;
  try {
    page = await api(`/v1/inspections${query({
      product: state.product, review: true, has_feedback: state.includeReviewed ? "" : false, limit: PAGE_SIZE, offset: state.offset,
    })}`);
  } catch (error) {
    if (seq === state.seq) panelMessage(panel, explainError(error), "error");
    return;
  }
  if (seq !== state.seq) return;
  revokeImages();
  state.total = page.total;
  if (!page.items.length) {
    $("cards").replaceChildren();
    panelMessage(panel, state.offset ? "no more frames" : state.includeReviewed ? "no inspections yet" : "nothing waiting for review");
  } else {
    panelMessage(panel, null);
    $("cards").replaceChildren(...page.items.map((item) => card(item, canRelabel)));
  }
  const last = state.offset + page.items.length;
  $("page-info").textContent = page.total ? `${state.offset + 1}–${last} of ${page.total}` : "";
  $("prev-page").disabled = state.offset === 0;
  $("next-page").disabled = last >= page.total;
  $("cards").dataset.loadedAt = String(Date.now());
  await loadImages([...$("cards").querySelectorAll("img[data-src]")], seq);
}

function reload() {
  writeUrl();
  return Promise.all([loadStrip(), loadCards()]);
}

$("product-select").addEventListener("change", () => {
  state.product = $("product-select").value;
  state.offset = 0;
  reload();
});
$("include-reviewed").addEventListener("change", () => {
  state.includeReviewed = $("include-reviewed").checked;
  state.offset = 0;
  reload();
});
$("reload").addEventListener("click", reload);
$("prev-page").addEventListener("click", () => {
  state.offset = Math.max(0, state.offset - PAGE_SIZE);
  loadCards();
});
$("next-page").addEventListener("click", () => {
  state.offset += PAGE_SIZE;
  loadCards();
});

readUrl();
startSession({
  onSignIn: async () => {
    await loadProducts();
    await reload();
  },
  onSignOut: () => {
    revokeImages();
    $("cards").replaceChildren();
  },
});

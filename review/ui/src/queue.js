import { api, boot, el, fmt, shortStream } from "./common.js";

const status = document.getElementById("status");

async function start() {
  status.textContent = "finding a task…";
  try {
    const { task } = await api("/api/next", { method: "POST" });
    if (!task) { status.textContent = "Nothing left for you to review."; return; }
    window.location.assign(`/clip/${task.ref}`);
  } catch (e) { status.textContent = e.message; status.className = "error"; }
}

function reviewsCell(t) { return `${t.reviewers.length}/${t.reviews_required}`; }

async function loadQueue() {
  const { tasks, features, page_size } = await api("/api/queue");
  document.getElementById("order-note").textContent =
    `${tasks.length} pending. Order: most uncertain first; the most uncertain half is clustered ` +
    `(${features === "embedding" ? "clip embeddings" : "top-k probabilities: no embeddings stored"}) ` +
    `into up to ${page_size} groups and each group's most central clip comes first (marked ◆).`;
  const body = document.querySelector("#queue tbody");
  body.replaceChildren(...tasks.map((t) => el("tr", { class: t.centroid ? "centroid" : "", dataset: { ref: t.ref } },
    el("td", {}, t.rank),
    el("td", { title: t.stream_id }, shortStream(t.stream_id)),
    el("td", {}, t.sequence),
    el("td", {}, t.label),
    el("td", {}, fmt(t.confidence)),
    el("td", {}, fmt(t.margin)),
    el("td", {}, el("span", { class: "pill " + (t.kind === "sample" ? "ok" : "warn") }, t.kind), " ", t.reasons.join("; ")),
    el("td", {}, t.cluster === null ? "" : (t.centroid ? "◆ " : "") + "group " + (t.cluster + 1)),
    el("td", {}, reviewsCell(t)),
    el("td", {}, t.leased ? `leased to ${t.lease_owner}` : ""),
    el("td", {}, el("a", { href: `/clip/${t.ref}` }, "open")),
  )));
}

async function loadAudit() {
  if (boot.role === "reviewer") return;
  document.getElementById("audit-section").hidden = false;
  const { tasks, audited } = await api("/api/audit");
  const agreement = (t) => (t.consensus && t.consensus.mean_label_iou !== undefined
    ? `label IoU ${fmt(t.consensus.mean_label_iou, 2)}` : `${t.reviewers.length} review`);
  document.querySelector("#audit tbody").replaceChildren(...tasks.map((t) => el("tr", {},
    el("td", {}, shortStream(t.stream_id)), el("td", {}, t.sequence), el("td", {}, t.label),
    el("td", {}, t.human_label || "–"), el("td", {}, t.reviewers.join(", ")), el("td", {}, agreement(t)),
    el("td", {}, el("a", { href: `/clip/${t.ref}` }, "audit")))));
  document.querySelector("#audited tbody").replaceChildren(...audited.map((t) => el("tr", {},
    el("td", {}, shortStream(t.stream_id)), el("td", {}, t.sequence), el("td", {}, t.label),
    el("td", {}, t.human_label || "–"), el("td", {}, t.reviewers.join(", ")),
    el("td", {}, el("a", { href: `/clip/${t.ref}` }, "view")))));
}

document.getElementById("start").addEventListener("click", start);
loadQueue().catch((e) => { status.textContent = e.message; });
loadAudit().catch((e) => { status.textContent = e.message; });

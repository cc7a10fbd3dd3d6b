import { api, el, fmt } from "./common.js";

async function refresh() {
  const { streams, pending_tasks } = await api("/api/streams");
  document.getElementById("summary").textContent =
    `${streams.length} streams · ${pending_tasks} tasks waiting for review · refreshed ${new Date().toLocaleTimeString()}`;
  document.getElementById("streams").replaceChildren(el("div", { class: "streams-grid" }, streams.map((s) =>
    el("div", { class: "stream card" },
      el("h3", {}, s.stream_id),
      el("p", { class: "muted" },
        `latest segment ${s.latest_sequence ?? "–"} · ${s.seconds_since_last === null ? "–" : fmt(s.seconds_since_last, 0) + " s ago"}` +
        (s.processing_lag === null ? "" : ` · processing lag ${fmt(s.processing_lag, 1)} s`)),
      el("table", { class: "grid" },
        el("thead", {}, el("tr", {}, ["seq", "model", "conf.", "human", "status"].map((h) => el("th", {}, h)))),
        el("tbody", {}, s.segments.map((p) => el("tr", {},
          el("td", {}, p.sequence), el("td", {}, p.label), el("td", {}, fmt(p.confidence, 2)),
          el("td", { class: p.human_label && p.human_label !== p.label ? "corrected" : "" },
            p.human_label ? `${p.human_label} (${p.reviewed_by})` : (p.needs_review ? "waiting" : "")),
          el("td", {}, p.status)))))))));
}

refresh().catch((e) => { document.getElementById("summary").textContent = e.message; });
setInterval(() => refresh().catch(() => {}), 5000);

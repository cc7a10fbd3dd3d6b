// The clip page: the video with a Wavesurfer.js timeline under it. Each track is one lane of
// the timeline (a channel of the motion curve), segments are regions in their lane. The list
// of segments beside the player is the model of truth: regions are redrawn from it.
import WaveSurfer from "wavesurfer.js";
import RegionsPlugin from "wavesurfer.js/dist/plugins/regions.esm.js";
import TimelinePlugin from "wavesurfer.js/dist/plugins/timeline.esm.js";
import { api, boot, el, fmt, shortStream } from "./common.js";

const COLORS = ["#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626"];
const LANE_HEIGHT = 46;
const $ = (id) => document.getElementById(id);
const video = $("video");
const message = $("message");

const state = {
  task: null, media: null, labels: [], tracks: ["activity"], activeTrack: "activity",
  segments: [], selected: null, recording: null, audit: false, readOnly: false,
};

function say(text, error = false) { message.textContent = text; message.className = error ? "error" : "muted"; }
const newId = () => "s" + Math.random().toString(36).slice(2, 10);
const trackColor = (track) => COLORS[state.tracks.indexOf(track) % COLORS.length];
const alpha = (hex) => hex + "55";

// --- timeline ---------------------------------------------------------------------------------
let ws, regions;

function lanes() {
  return state.tracks.map(() => state.media.motion);
}

function buildTimeline() {
  regions = RegionsPlugin.create();
  ws = WaveSurfer.create({
    container: "#waveform", media: video, url: state.media.url,
    peaks: lanes(), duration: state.media.duration,
    splitChannels: state.tracks.map((t) => ({ waveColor: "#9ca3af", progressColor: "#4b5563", height: LANE_HEIGHT })),
    height: LANE_HEIGHT, minPxPerSec: Number($("zoom").value), normalize: false,
    plugins: [regions, TimelinePlugin.create({ height: 18, timeInterval: 0.1, primaryLabelInterval: 1,
                                               style: { fontSize: "11px", color: "#667085" } })],
  });
  ws.on("ready", () => renderRegions());
  ws.on("timeupdate", (t) => tick(t));
  regions.on("region-updated", (region) => {
    const seg = state.segments.find((s) => s.id === region.id);
    if (!seg) return;
    seg.start = round(region.start); seg.end = round(region.end);
    renderList();
  });
  regions.on("region-clicked", (region, e) => { e.stopPropagation(); select(region.id, true); });
  if (!state.readOnly) {
    regions.enableDragSelection({ color: "rgba(0,0,0,0.08)" });
    regions.on("region-created", (region) => {
      if (state.segments.some((s) => s.id === region.id) || region.id.startsWith("rec-")) return;
      // a drag on the timeline: a new segment on the active track
      const seg = { id: newId(), track: state.activeTrack, start: round(region.start), end: round(region.end),
                    label: defaultLabel(), text: "", quality: [] };
      region.remove();
      if (seg.end - seg.start < 0.05) return;
      state.segments.push(seg); select(seg.id); renderAll();
    });
  }
}

function round(x) { return Math.round(x * 1000) / 1000; }
function defaultLabel() { return state.task ? (state.labels.includes(state.task.label) ? state.task.label : state.labels[0]) : state.labels[0]; }

function renderRegions() {
  if (!regions) return;
  regions.clearRegions();
  for (const s of state.segments) {
    const lane = state.tracks.indexOf(s.track);
    const r = regions.addRegion({ id: s.id, start: s.start, end: s.end, channelIdx: lane,
                                  color: alpha(trackColor(s.track)), content: s.label,
                                  drag: !state.readOnly, resize: !state.readOnly });
    if (s.id === state.selected && r.element) r.element.style.outline = "2px solid #111827";
  }
}

function relayout() {
  // a new track is a new lane: the timeline is rebuilt with one channel more
  // (setOptions alone keeps the old channel count: load() re-renders; the same URL is not refetched)
  ws.setOptions({ splitChannels: state.tracks.map(() => ({ waveColor: "#9ca3af", progressColor: "#4b5563", height: LANE_HEIGHT })) });
  const t = video.currentTime;
  ws.load(state.media.url, lanes(), state.media.duration).then(() => { ws.setTime(t); renderRegions(); });
}

function tick(t) {
  $("time").textContent = `${fmt(t)} / ${fmt(state.media.duration)} s`;
  if (state.recording) {
    state.recording.end = Math.max(round(t), state.recording.start + 0.001);
    const r = regions.getRegions().find((x) => x.id === "rec-live");
    if (r) r.setOptions({ start: state.recording.start, end: state.recording.end });
    else regions.addRegion({ id: "rec-live", start: state.recording.start, end: state.recording.end,
                             channelIdx: state.tracks.indexOf(state.recording.track),
                             color: "rgba(220,38,38,0.35)", drag: false, resize: false, content: "● rec" });
  }
}

// --- recording while playing --------------------------------------------------------------------
function toggleRecording() {
  if (state.readOnly) return;
  const btn = $("record");
  if (!state.recording) {
    state.recording = { track: state.activeTrack, start: round(video.currentTime), end: round(video.currentTime) };
    btn.textContent = "■ Stop recording"; btn.classList.add("recording");
    if (video.paused) ws.play();
    say(`recording on track “${state.activeTrack}” from ${fmt(state.recording.start)} s`);
    return;
  }
  const rec = state.recording;
  state.recording = null;
  rec.end = round(video.currentTime);
  btn.textContent = "● Begin recording"; btn.classList.remove("recording");
  const live = regions.getRegions().find((x) => x.id === "rec-live");
  if (live) live.remove();
  if (rec.end - rec.start < 0.05) { say("segment too short; not kept", true); return; }
  const seg = { id: newId(), track: rec.track, start: rec.start, end: rec.end, label: defaultLabel(), text: "", quality: [] };
  state.segments.push(seg);
  select(seg.id);
  renderAll();
  say(`segment ${fmt(seg.start)}–${fmt(seg.end)} s added to “${seg.track}”: pick its label`);
}

// --- tracks -------------------------------------------------------------------------------------
function renderTracks() {
  $("tracks").replaceChildren(...state.tracks.map((t) => {
    const on = t === state.activeTrack;
    return el("button", { class: "track-chip" + (on ? " on" : ""), dataset: { track: t },
                          style: `border-color:${trackColor(t)};${on ? `background:${trackColor(t)}` : ""}`,
                          onclick: () => { state.activeTrack = t; renderTracks(); } }, t);
  }));
}

function addTrack() {
  const input = $("new-track");
  const name = input.value.trim();
  if (!name) { say("name the new track first", true); return; }
  if (state.tracks.includes(name)) { say(`track “${name}” exists`, true); return; }
  if (state.tracks.length >= 8) { say("at most 8 tracks", true); return; }
  state.tracks.push(name); state.activeTrack = name; input.value = "";
  renderTracks(); relayout();
  say(`track “${name}” added; recordings now go to it`);
}

// --- segment list ---------------------------------------------------------------------------------
function select(id, seek = false) {
  state.selected = id;
  const s = state.segments.find((x) => x.id === id);
  if (s && seek) ws.setTime(s.start);
  renderList(); renderRegions();
}

function numberInput(seg, key) {
  return el("input", { type: "number", step: "0.001", min: "0", max: String(state.media.duration), value: seg[key].toFixed(3),
                       disabled: state.readOnly, dataset: { field: key },
                       onchange: (e) => { seg[key] = round(Number(e.target.value)); renderRegions(); } });
}

function renderList() {
  const flags = boot.quality_flags;
  $("segments").querySelector("tbody").replaceChildren(...state.segments.map((s) => el("tr",
    { class: s.id === state.selected ? "selected" : "", dataset: { id: s.id }, onclick: () => { if (state.selected !== s.id) select(s.id, true); } },
    el("td", {}, el("span", { style: `color:${trackColor(s.track)}` }, "■ "), s.track),
    el("td", {}, numberInput(s, "start")),
    el("td", {}, numberInput(s, "end")),
    el("td", {}, el("select", { class: "seg-label", disabled: state.readOnly, onchange: (e) => { s.label = e.target.value; renderRegions(); } },
      state.labels.map((l) => el("option", { value: l, selected: l === s.label }, l)))),
    el("td", {}, el("input", { type: "text", class: "seg-text", maxlength: "2000", value: s.text, placeholder: "what happens",
                               disabled: state.readOnly, oninput: (e) => { s.text = e.target.value; } })),
    el("td", { class: "quality" }, flags.map((f) => el("label", {}, el("input", { type: "checkbox", checked: s.quality.includes(f), disabled: state.readOnly,
      onchange: (e) => { s.quality = e.target.checked ? [...s.quality, f] : s.quality.filter((q) => q !== f); } }), f))),
    el("td", {}, state.readOnly ? "" : el("button", { title: "Delete", onclick: (e) => { e.stopPropagation(); remove(s.id); } }, "✕")),
  )));
}

function remove(id) {
  state.segments = state.segments.filter((s) => s.id !== id);
  if (state.selected === id) state.selected = null;
  renderAll();
}

function renderAll() { renderTracks(); renderList(); renderRegions(); }

// --- whole clip ------------------------------------------------------------------------------------
function clipAnswer() {
  const mc = document.querySelector('input[name="model-correct"]:checked');
  const rating = document.querySelector('input[name="rating"]:checked');
  return { label: $("clip-label").value || null, model_correct: mc ? mc.value === "yes" : null,
           rating: rating ? Number(rating.value) : null, notes: $("notes").value };
}

function labelsPayload() {
  const used = new Set(state.segments.map((s) => s.track));
  return { tracks: state.tracks.filter((t) => used.has(t) || t === state.tracks[0]),
           segments: state.segments.map(({ id, track, start, end, label, text, quality }) => ({ id, track, start, end, label, text, quality })),
           clip: clipAnswer() };
}

function loadAnnotation(a) {
  state.tracks = a.tracks.length ? [...a.tracks] : ["activity"];
  state.activeTrack = state.tracks[0];
  state.segments = a.segments.map((s) => ({ ...s }));
  $("clip-label").value = a.clip.label || "";
  if (a.clip.model_correct !== null) document.querySelector(`input[name="model-correct"][value="${a.clip.model_correct ? "yes" : "no"}"]`).checked = true;
  if (a.clip.rating) document.querySelector(`input[name="rating"][value="${a.clip.rating}"]`).checked = true;
  $("notes").value = a.clip.notes || "";
}

// --- actions ----------------------------------------------------------------------------------------
async function goNext() {
  const { task } = await api("/api/next", { method: "POST" });
  window.location.assign(task ? `/clip/${task.ref}` : "/");
}

async function submit() {
  if (state.recording) toggleRecording();
  try {
    $("submit").disabled = true;
    await api(`/api/tasks/${boot.ref}/submit`, { method: "POST", body: labelsPayload() });
    say("saved ✓");
    document.body.dataset.submitted = "1";
    setTimeout(() => goNext().catch((e) => say(e.message, true)), 600);
  } catch (e) { say(e.message, true); $("submit").disabled = false; }
}

async function skip() {
  try { await api(`/api/tasks/${boot.ref}/skip`, { method: "POST" }); await goNext(); } catch (e) { say(e.message, true); }
}

async function audit(decision) {
  const body = { decision, comment: $("audit-comment").value };
  if (decision === "adjusted") body.labels = labelsPayload();
  try {
    const { audit: rec } = await api(`/api/tasks/${boot.ref}/audit`, { method: "POST", body });
    const ag = rec.agreement;
    say(`audit saved: ${decision}; segment IoU ${fmt(ag.segment_iou, 2)}, label IoU ${fmt(ag.label_iou, 2)}, clip label ${ag.clip_label_agree ? "agrees" : "differs"}`);
    document.body.dataset.submitted = "1";
  } catch (e) { say(e.message, true); }
}

function keys(e) {
  if (e.target.closest("input, textarea, select") && !(e.ctrlKey && e.key === "Enter")) return;
  const sel = state.segments.find((s) => s.id === state.selected);
  if (e.key === " ") { e.preventDefault(); ws.playPause(); }
  else if (e.key === "r" || e.key === "R") { e.preventDefault(); toggleRecording(); }
  else if (e.ctrlKey && e.key === "Enter") { e.preventDefault(); if (!state.readOnly) (state.audit ? audit("adjusted") : submit()); }
  else if (/^[1-9]$/.test(e.key) && sel && !state.readOnly) { const l = state.labels[Number(e.key) - 1]; if (l) { sel.label = l; renderAll(); } }
  else if ((e.key === "Delete" || e.key === "Backspace") && sel && !state.readOnly) { e.preventDefault(); remove(sel.id); }
  else if (e.key === "," || e.key === ".") { e.preventDefault(); ws.setTime(Math.max(0, video.currentTime + (e.key === "," ? -1 : 1) / state.media.fps)); }
  else if (e.key === "+" || e.key === "=" || e.key === "-") {
    const z = $("zoom"); z.value = String(Number(z.value) * (e.key === "-" ? 0.7 : 1.4)); ws.zoom(Number(z.value));
  }
}

function renderModel(task, prediction) {
  const top = prediction ? prediction.top_k.map((s) => `${s.label} ${fmt(s.probability, 2)}`).join(" · ") : "";
  $("model").replaceChildren(
    el("div", {}, el("b", {}, task.label), ` (confidence ${fmt(task.confidence)}, margin ${fmt(task.margin)})`),
    el("div", { class: "muted" }, top),
    el("div", { class: "muted" }, `why: ${task.reasons.join("; ")}`),
    el("div", { class: "muted" }, `${shortStream(task.stream_id)} #${task.sequence} · model ${task.model_version}`));
}

function renderHistory(detail) {
  const items = [];
  for (const a of detail.annotations) {
    items.push(el("li", {}, `${a.role} ${a.author}: ${a.segments.length} segments, clip “${a.clip.label || "(from segments)"}” at ${a.submitted_at}`));
  }
  for (const au of detail.audits) {
    items.push(el("li", {}, `audit by ${au.auditor}: ${au.decision}; segment IoU ${fmt(au.agreement.segment_iou, 2)}, label IoU ${fmt(au.agreement.label_iou, 2)}, clip label ${au.agreement.clip_label_agree ? "agrees" : "differs"}${au.comment ? " — " + au.comment : ""}`));
  }
  const c = detail.task.consensus;
  if (c && c.reviews > 1) items.push(el("li", {}, `consensus of ${c.reviews}: majority ${c.majority || "none"}, mean label IoU ${fmt(c.mean_label_iou, 2)}`));
  $("history").replaceChildren(items.length ? el("h2", {}, "History") : "", el("ul", {}, items));
}

async function main() {
  const detail = await api(`/api/tasks/${boot.ref}`);
  let task = detail.task;
  state.task = task; state.media = detail.media; state.labels = detail.labels;
  $("title").textContent = `${task.label}? — ${shortStream(task.stream_id)} #${task.sequence}`;
  for (const l of state.labels) $("clip-label").append(el("option", { value: l }, l));
  $("rating").replaceChildren(...[1, 2, 3, 4, 5].map((n) => el("label", {}, el("input", { type: "radio", name: "rating", value: String(n) }), String(n))));
  renderModel(task, detail.prediction);
  renderHistory(detail);

  const mode = $("mode");
  if (task.status === "pending") {
    try {
      task = (await api(`/api/tasks/${boot.ref}/lease`, { method: "POST" })).task;
      mode.textContent = `review · lease until ${new Date(task.lease_expires * 1000).toLocaleTimeString()}`;
    } catch (e) { state.readOnly = true; mode.textContent = "read only"; say(e.message, true); }
  } else if (task.status === "reviewed" && boot.role !== "reviewer" && !task.reviewers.includes(boot.user)) {
    state.audit = true; mode.textContent = "audit"; mode.classList.add("warn");
    const consensus = detail.annotations.find((a) => a.annotation_id === task.consensus_annotation_id);
    if (consensus) loadAnnotation(consensus);
    $("review-actions").hidden = true; $("audit-actions").hidden = false;
  } else {
    state.readOnly = true; mode.textContent = task.status; mode.classList.add("ok");
    const final = detail.annotations.find((a) => a.annotation_id === task.consensus_annotation_id);
    if (final) loadAnnotation(final);
  }
  if (state.readOnly) $("review-actions").hidden = true;
  buildTimeline();
  renderAll();
  document.body.dataset.ready = "1";
}

$("play").addEventListener("click", () => ws.playPause());
video.addEventListener("play", () => { $("play").textContent = "❚❚ Pause"; });
video.addEventListener("pause", () => { $("play").textContent = "▶ Play"; });
$("record").addEventListener("click", toggleRecording);
$("speed").addEventListener("change", (e) => ws.setPlaybackRate(Number(e.target.value), true));
$("zoom").addEventListener("input", (e) => ws.zoom(Number(e.target.value)));
$("add-track").addEventListener("click", addTrack);
$("submit").addEventListener("click", submit);
$("skip").addEventListener("click", skip);
$("approve").addEventListener("click", () => audit("approved"));
$("adjust").addEventListener("click", () => audit("adjusted"));
document.addEventListener("keydown", keys);
main().catch((e) => say(e.message, true));

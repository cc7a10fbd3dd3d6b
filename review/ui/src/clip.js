// The clip page: the video with a Wavesurfer.js timeline under it. Each track is one lane of
// the timeline (a channel of the motion curve, or of the model's per-window confidence),
// segments are regions in their lane, and the model's proposed segments (inference.presegment)
// sit in the first lane until the reviewer accepts, adjusts or deletes them. The lists beside
// the player are the model of truth: regions are redrawn from them. Every boundary lands on a
// frame; everything a reviewer does while the clip plays is on the keyboard.
import WaveSurfer from "wavesurfer.js";
import RegionsPlugin from "wavesurfer.js/dist/plugins/regions.esm.js";
import TimelinePlugin from "wavesurfer.js/dist/plugins/timeline.esm.js";
import { api, boot, el, fmt, shortStream } from "./common.js";

const COLORS = ["#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626"];
const LANE_HEIGHT = 46;
const $ = (id) => document.getElementById(id);
const video = $("video");
const message = $("message");

const SPEEDS = boot.speeds;
const UNSURE = 0.5;  // a proposal the model gives less than even odds is marked so

const state = {
  task: null, media: null, labels: [], tracks: ["activity"], activeTrack: "activity",
  segments: [], selected: null, recording: null, audit: false, readOnly: false,
  proposals: [], windows: [], curve: "motion", loop: false,
};

function say(text, error = false) { message.textContent = text; message.className = error ? "error" : "muted"; }
// Boundaries live on frames: a time is the start of the frame it falls in, to the millisecond.
const frameOf = (t) => Math.round(t * state.media.fps);
const snap = (t) => Math.round((frameOf(t) / state.media.fps) * 1000) / 1000;
const newId = () => "s" + Math.random().toString(36).slice(2, 10);
const trackColor = (track) => COLORS[state.tracks.indexOf(track) % COLORS.length];
const alpha = (hex) => hex + "55";

// --- timeline ---------------------------------------------------------------------------------
let ws, regions;

// The model's confidence per frame: that of the window whose centre is nearest.
function confidenceCurve() {
  const n = state.media.motion.length, fps = state.media.fps, w = state.windows;
  return Array.from({ length: n }, (_, i) => {
    const t = i / fps;
    let best = w[0];
    for (const x of w) if (Math.abs((x.start + x.end) / 2 - t) < Math.abs((best.start + best.end) / 2 - t)) best = x;
    return best.confidence;
  });
}

function lanes() {
  const curve = state.curve === "confidence" && state.windows.length ? confidenceCurve() : state.media.motion;
  return state.tracks.map(() => curve);
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
    const p = state.proposals.find((x) => x.id === region.id);
    if (p) { p.start = snap(region.start); p.end = snap(region.end); accept([p]); return; }  // adjusting a proposal takes it
    const seg = state.segments.find((s) => s.id === region.id);
    if (!seg) return;
    seg.start = snap(region.start); seg.end = snap(region.end);
    renderList(); renderRegions();
  });
  regions.on("region-clicked", (region, e) => { e.stopPropagation(); select(region.id, true); });
  if (!state.readOnly) {
    regions.enableDragSelection({ color: "rgba(0,0,0,0.08)" });
    regions.on("region-created", (region) => {
      if (state.segments.some((s) => s.id === region.id) || region.id.startsWith("rec-") || region.id.startsWith("p-")) return;
      // a drag on the timeline: a new segment on the active track
      const seg = { id: newId(), track: state.activeTrack, start: snap(region.start), end: snap(region.end),
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
  for (const p of state.proposals) {
    const r = regions.addRegion({ id: p.id, start: p.start, end: p.end, channelIdx: 0, color: "rgba(250,204,21,0.30)",
                                  content: `proposal: ${p.label} ${fmt(p.confidence, 2)}`, drag: true, resize: true });
    if (r.element) r.element.style.border = p.id === state.selected ? "2px solid #111827" : "1px dashed #a16207";
  }
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
  $("time").textContent = `${fmt(t)} / ${fmt(state.media.duration)} s · frame ${frameOf(t)}`;
  const sel = state.segments.find((s) => s.id === state.selected) || state.proposals.find((p) => p.id === state.selected);
  if (state.loop && sel && !video.paused && (t >= sel.end || t < sel.start - 0.25)) { ws.setTime(sel.start); return; }
  if (state.recording) {
    state.recording.end = Math.max(snap(t), state.recording.start + 0.001);
    const r = regions.getRegions().find((x) => x.id === "rec-live");
    if (r) r.setOptions({ start: state.recording.start, end: state.recording.end });
    else regions.addRegion({ id: "rec-live", start: state.recording.start, end: state.recording.end,
                             channelIdx: state.tracks.indexOf(state.recording.track),
                             color: "rgba(220,38,38,0.35)", drag: false, resize: false,
                             content: `● ${state.recording.label}` });
  }
}

// --- recording while playing ----------------------------------------------------------------------
// R begins and ends a segment; a number key while playing ends the running one at this frame
// and begins one with that label at the same frame, so a reviewer labels a clip in one pass.
function startRecording(label, t) {
  state.recording = { track: state.activeTrack, label, start: snap(t), end: snap(t) };
  const btn = $("record");
  btn.textContent = "■ Stop recording"; btn.classList.add("recording");
  say(`recording “${label}” on track “${state.activeTrack}” from frame ${frameOf(t)}`);
}

function stopRecording(t) {
  const rec = state.recording;
  state.recording = null;
  rec.end = snap(t);
  const btn = $("record");
  btn.textContent = "● Begin recording"; btn.classList.remove("recording");
  const live = regions.getRegions().find((x) => x.id === "rec-live");
  if (live) live.remove();
  if (rec.end - rec.start < 0.05) { say("segment too short; not kept", true); return; }
  const seg = { id: newId(), track: rec.track, start: rec.start, end: rec.end, label: rec.label, text: "", quality: [] };
  state.segments.push(seg);
  state.selected = seg.id;
  renderAll();
  say(`segment ${fmt(seg.start)}–${fmt(seg.end)} s (“${seg.label}”) added to “${seg.track}”`);
}

function toggleRecording() {
  if (state.readOnly) return;
  if (state.recording) { stopRecording(video.currentTime); return; }
  startRecording(defaultLabel(), video.currentTime);
  if (video.paused) ws.play();
}

function labelWhilePlaying(label) {
  const t = video.currentTime;
  if (state.recording) stopRecording(t);
  if (label) startRecording(label, t);
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

// --- number keys ---------------------------------------------------------------------------------
// 1–9 stand for the labels this clip most likely needs: the model's top answers, then its
// proposals' labels, then the rest of the list in order (a 400-class model's list is long).
function assignKeys(prediction) {
  const likely = [...(prediction ? prediction.top_k.map((x) => x.label) : []), ...state.proposals.map((p) => p.label), ...state.labels];
  state.keyLabels = [...new Set(likely.filter((l) => state.labels.includes(l)))].slice(0, 9);
  $("key-labels").replaceChildren(...state.keyLabels.map((l, i) => el("span", { class: "key-label", dataset: { key: String(i + 1), label: l } },
                                                                     el("kbd", {}, String(i + 1)), " ", l)));
}

// --- proposals -------------------------------------------------------------------------------------
function accept(list) {
  const usable = list.filter((p) => state.labels.includes(p.label));
  for (const p of usable) {
    state.segments.push({ id: newId(), track: state.tracks[0], start: p.start, end: p.end, label: p.label, text: "", quality: [] });
  }
  const taken = new Set(usable.map((p) => p.id));
  state.proposals = state.proposals.filter((p) => !taken.has(p.id));
  if (taken.has(state.selected)) state.selected = state.segments[state.segments.length - 1].id;
  renderAll();
  if (usable.length) say(`${usable.length} proposal${usable.length > 1 ? "s" : ""} accepted`);
  if (usable.length < list.length) say("a proposal whose label is not in this task's list was left", true);
}

function dropProposal(id) {
  state.proposals = state.proposals.filter((p) => p.id !== id);
  if (state.selected === id) state.selected = null;
  renderAll();
}

function dropAllProposals() {  // an auditor or a read-only view judges the reviewer's segments
  state.proposals = []; state.hadProposals = false;
  $("proposals-note").textContent = "Proposals are for the reviewer; these are the reviewed segments.";
}

function renderProposals() {
  const editable = !state.readOnly && !state.audit;
  $("accept-all").hidden = !editable || !state.proposals.length;
  $("proposals").hidden = !state.proposals.length;
  if (!state.proposals.length && state.hadProposals) $("proposals-note").textContent = "Every proposal was accepted or deleted.";
  $("proposals").querySelector("tbody").replaceChildren(...state.proposals.map((p) => el("tr",
    { class: [p.id === state.selected ? "selected" : "", p.confidence < UNSURE ? "unsure" : ""].join(" ").trim(),
      dataset: { id: p.id }, onclick: () => select(p.id, true) },
    el("td", {}, fmt(p.start)), el("td", {}, fmt(p.end)),
    el("td", {}, p.label, state.labels.includes(p.label) ? "" : " (not a label here)"),
    el("td", {}, fmt(p.confidence, 2), p.confidence < UNSURE ? " (unsure)" : ""),
    el("td", {}, editable ? [el("button", { class: "accept", title: "Enter", onclick: (e) => { e.stopPropagation(); accept([p]); } }, "Accept"),
                             el("button", { title: "Delete", onclick: (e) => { e.stopPropagation(); dropProposal(p.id); } }, "✕")] : ""))));
}

// --- segment list ---------------------------------------------------------------------------------
function select(id, seek = false) {
  state.selected = id;
  const s = state.segments.find((x) => x.id === id) || state.proposals.find((x) => x.id === id);
  if (s && seek) ws.setTime(s.start);
  renderList(); renderProposals(); renderRegions();
}

function selectNext() {
  const ids = [...state.segments, ...state.proposals].sort((a, b) => a.start - b.start).map((x) => x.id);
  if (ids.length) select(ids[(ids.indexOf(state.selected) + 1) % ids.length], true);
}

function moveBoundary(seg, side) {
  const t = snap(video.currentTime);
  if (side === "start" ? t >= seg.end : t <= seg.start) { say(`the ${side} must stay on the other side of the ${side === "start" ? "end" : "start"}`, true); return; }
  seg[side] = t;
  renderAll();
  say(`${side} of “${seg.label}” set to frame ${frameOf(t)} (${fmt(t)} s)`);
}

function numberInput(seg, key) {
  return el("input", { type: "number", step: String(round(1 / state.media.fps)), min: "0", max: String(state.media.duration),
                       value: seg[key].toFixed(3), disabled: state.readOnly, dataset: { field: key },
                       onchange: (e) => { seg[key] = snap(Number(e.target.value)); e.target.value = seg[key].toFixed(3); renderRegions(); } });
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

function renderAll() { renderTracks(); renderList(); renderProposals(); renderRegions(); }

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

function setSpeed(step) {
  const i = Math.max(0, Math.min(SPEEDS.length - 1, SPEEDS.indexOf(Number($("speed").value)) + step));
  $("speed").value = String(SPEEDS[i]);
  ws.setPlaybackRate(SPEEDS[i], true);
  say(`speed ${SPEEDS[i]}×`);
}

function toggleLoop() {
  state.loop = !state.loop;
  $("loop").setAttribute("aria-pressed", String(state.loop));
  say(state.loop ? "looping the selected segment" : "loop off");
}

function keys(e) {
  if (e.target.closest("input, textarea, select") && !(e.ctrlKey && e.key === "Enter")) return;
  if (e.altKey || e.metaKey) return;
  const sel = state.segments.find((s) => s.id === state.selected);
  const proposal = state.proposals.find((p) => p.id === state.selected);
  const editable = !state.readOnly;
  const playing = !video.paused;
  let handled = true;
  if (e.key === " ") ws.playPause();
  else if (e.ctrlKey && e.key === "Enter") { if (editable) (state.audit ? audit("adjusted") : submit()); }
  else if (e.ctrlKey) handled = false;
  else if (e.key === "r" || e.key === "R") toggleRecording();
  else if (/^[0-9]$/.test(e.key) && playing && editable) {
    const l = e.key === "0" ? null : state.keyLabels[Number(e.key) - 1];
    if (l !== undefined) labelWhilePlaying(l);
  } else if (/^[1-9]$/.test(e.key) && sel && editable) { const l = state.keyLabels[Number(e.key) - 1]; if (l) { sel.label = l; renderAll(); } }
  else if ((e.key === "Delete" || e.key === "Backspace") && editable && (sel || proposal)) (sel ? remove(sel.id) : dropProposal(proposal.id));
  else if (e.key === ",") ws.setTime(Math.max(0, (frameOf(video.currentTime) - 1) / state.media.fps));
  else if (e.key === ".") ws.setTime(Math.min(state.media.duration, (frameOf(video.currentTime) + 1) / state.media.fps));
  else if (e.key === "[" && sel && editable) moveBoundary(sel, "start");
  else if (e.key === "]" && sel && editable) moveBoundary(sel, "end");
  else if (e.key === "<") setSpeed(-1);
  else if (e.key === ">") setSpeed(1);
  else if (e.key === "l" || e.key === "L") toggleLoop();
  else if (e.key === "n" || e.key === "N") selectNext();
  else if ((e.key === "a" || e.key === "A") && editable && !state.audit) accept([...state.proposals]);
  else if (e.key === "Enter" && proposal && editable) accept([proposal]);
  else if (e.key === "+" || e.key === "=" || e.key === "-") {
    const z = $("zoom"); z.value = String(Number(z.value) * (e.key === "-" ? 0.7 : 1.4)); ws.zoom(Number(z.value));
  } else handled = false;
  if (handled) e.preventDefault();
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
  const pre = detail.prediction && detail.prediction.presegmentation;
  state.windows = pre ? pre.windows : [];
  state.proposals = pre ? pre.proposals.map((p, k) => ({ ...p, id: `p-${k}` })) : [];
  state.hadProposals = state.proposals.length > 0;
  assignKeys(detail.prediction);
  $("proposals-note").textContent = !pre ? "No proposals: the model proposed no segments for this clip (predicted without them, e.g. by an endpoint run with --no-proposals)."
    : pre.note ? pre.note : state.proposals.length ? "The model's segments: accept, adjust (drag) or delete them." : "No proposals.";
  $("curve").querySelector('option[value="confidence"]').disabled = !state.windows.length;

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
    dropAllProposals();
    $("review-actions").hidden = true; $("audit-actions").hidden = false;
  } else {
    state.readOnly = true; mode.textContent = task.status; mode.classList.add("ok");
    const final = detail.annotations.find((a) => a.annotation_id === task.consensus_annotation_id);
    if (final) loadAnnotation(final);
    dropAllProposals();
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
$("loop").addEventListener("click", toggleLoop);
$("accept-all").addEventListener("click", () => accept([...state.proposals]));
$("curve").addEventListener("change", (e) => { state.curve = e.target.value; relayout(); });
video.addEventListener("ended", () => { if (state.recording) stopRecording(state.media.duration); });
$("zoom").addEventListener("input", (e) => ws.zoom(Number(e.target.value)));
$("add-track").addEventListener("click", addTrack);
$("submit").addEventListener("click", submit);
$("skip").addEventListener("click", skip);
$("approve").addEventListener("click", () => audit("approved"));
$("adjust").addEventListener("click", () => audit("adjusted"));
document.addEventListener("keydown", keys);
main().catch((e) => say(e.message, true));

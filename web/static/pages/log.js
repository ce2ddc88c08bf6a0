// Stage log view. The DOM holds a window of consecutive lines [first, last] of the log, at most
// CAP of them: the tail on open (or the page around #L<n>), earlier pages loaded on demand when the
// user scrolls up, later pages when scrolling down, and live bytes over the page's WebSocket once
// the window reaches the end of what is stored. ANSI colours are rendered by ansi_up (which
// escapes HTML) as classes, under the page's CSP (see ansi.js). Timestamps are the browser's receive time of live lines; lines loaded from
// history have none.
// Sections: BuildIt's marked lines (logmarks.js) say where each command starts and how the stage
// ended. Each line carries its command's number (data-sec); a header's button folds the lines of
// its command; the list above the log links to each command, and a finished log that failed opens
// at the header of the command that failed, marked.
import { ClassAnsiUp as AnsiUp, paint } from "/static/ansi.js";
import { parseMark, markClasses } from "/static/logmarks.js";

const CAP = 5000;
const PAGE = 1000;
const data = document.body.dataset;
const logEl = document.getElementById("log");
const stateEl = document.getElementById("log-state");
const earlierBtn = document.getElementById("load-earlier");
const laterBtn = document.getElementById("load-later");
const followBtn = document.getElementById("follow");
const emptyEl = document.getElementById("log-empty");
const encoder = new TextEncoder();
const TAG = "log-" + data.stage + "-" + data.attempt;

let ansi = new AnsiUp();
let nextLine = 1; // number of the next line to start (or of the partial line being continued)
let endOffset = 0; // byte offset just past the DOM's last byte
let partial = null; // the last line's element while it has no newline yet
let atEnd = false; // the window reaches the end of the stored log (live bytes follow)
let live = false;
let finished = false;
let following = true;
let busy = false;
let searchText = "";
let ownTop = null; // where our own last scroll change put the view: not the user scrolling
let lastTop = 0;

// --- sections (one per command)
const commands = new Map(); // command number -> {line, text, total}
let ending = null; // the closing mark: {status, command, line}
const folded = new Set(); // command numbers whose lines are hidden
const sectionsEl = document.getElementById("log-sections");

function learn(mark, line) {
  if (mark.kind === "cmd") {
    const index = Number(mark.fields[0]);
    if (!commands.has(index)) {
      commands.set(index, { line, text: mark.text, total: Number(mark.fields[1]) || 0 });
      renderSections();
    }
  } else if (mark.kind === "end" && (!ending || ending.line !== line)) {
    ending = { status: mark.fields[0], command: Number(mark.fields[1]) || 0, line };
    renderSections();
    markFailed();
  }
}
/** The command a line belongs to: the last one that started at or before it (0: none yet). */
function sectionAt(line) {
  let best = 0, bestLine = 0;
  for (const [index, c] of commands) if (c.line <= line && c.line >= bestLine) { best = index; bestLine = c.line; }
  return best;
}

/** The header line of the command the stage failed (or timed out) in, if it did. */
function failedLine() {
  if (!ending || !["failed", "timed_out"].includes(ending.status)) return null;
  const c = commands.get(ending.command);
  return c ? c.line : null;
}

function markFailed() {
  const line = failedLine();
  const el = line && document.getElementById("L" + line);
  if (el) el.classList.add("cmd-failed");
}

function sectionState(index) {
  if (ending) {
    if (ending.status === "succeeded" || index < ending.command) return "succeeded";
    return index === ending.command ? ending.status : "succeeded";
  }
  return index === Math.max(...commands.keys()) ? "running" : "succeeded";
}

const ICONS = { succeeded: "✓", failed: "✗", timed_out: "⏱", running: "◐", cancelled: "⊘", error: "!" };

function renderSections() {
  if (!commands.size) { sectionsEl.hidden = true; return; }
  const list = sectionsEl.querySelector("ol");
  list.textContent = "";
  let total = 0;
  for (const index of [...commands.keys()].sort((a, b) => a - b)) {
    const c = commands.get(index);
    total = Math.max(total, c.total);
    const state = sectionState(index);
    const li = document.createElement("li");
    li.dataset.command = String(index);
    li.dataset.state = state;
    const a = document.createElement("a");
    a.href = "#L" + c.line;
    const icon = document.createElement("span");
    icon.className = "sec-icon";
    icon.setAttribute("aria-hidden", "true");
    icon.textContent = ICONS[state] || "•";
    const text = document.createElement("span");
    text.textContent = c.text;
    a.append(icon, " ", text);
    a.setAttribute("aria-label", "Command " + index + " (" + state.replace("_", " ") + "): " + c.text);
    // Folds the command's lines even when its header is not among the lines loaded.
    const fold = document.createElement("button");
    fold.type = "button";
    fold.className = "fold small";
    fold.dataset.command = String(index);
    fold.setAttribute("aria-expanded", String(!folded.has(index)));
    fold.setAttribute("aria-label", (folded.has(index) ? "Expand" : "Collapse") + " command " + index);
    fold.textContent = folded.has(index) ? "▸" : "▾";
    li.append(fold, a);
    list.append(li);
  }
  const started = Math.max(...commands.keys());
  if (ending && total > started) {
    const li = document.createElement("li");
    li.className = "muted";
    li.dataset.state = "not_run";
    li.textContent = (total - started) + " more command" + (total - started === 1 ? "" : "s") + " not run";
    list.append(li);
  }
  sectionsEl.hidden = false;
}

function foldLabel(index, isFolded) {
  const c = commands.get(index);
  return (isFolded ? "Expand" : "Collapse") + " command " + index + (c ? ": " + c.text : "");
}

function setFolded(index, fold) {
  if (fold) folded.add(index); else folded.delete(index);
  renderSections();
  for (const el of logEl.querySelectorAll('.line[data-sec="' + index + '"]')) {
    if (el.classList.contains("cmd")) {
      const button = el.querySelector("button.fold");
      button.setAttribute("aria-expanded", String(!fold));
      button.setAttribute("aria-label", foldLabel(index, fold));
      button.textContent = fold ? "▸" : "▾";
    } else {
      el.classList.toggle("folded", fold);
    }
  }
}

for (const m of JSON.parse(data.marks || "[]")) learn(m, m.line);

logEl.addEventListener("click", (ev) => {
  const button = ev.target.closest("button.fold");
  if (!button) return;
  const index = Number(button.closest(".line").dataset.sec);
  setFolded(index, !folded.has(index));
});
sectionsEl.addEventListener("click", (ev) => {
  const button = ev.target.closest("button.fold");
  if (!button) return;
  const index = Number(button.dataset.command);
  setFolded(index, !folded.has(index));
  const again = sectionsEl.querySelector('button.fold[data-command="' + index + '"]');
  if (again) again.focus();
});

function setScroll(top) {
  logEl.scrollTop = top;
  ownTop = lastTop = logEl.scrollTop;
}

const byteLength = (s) => encoder.encode(s).length;

function lineElement(number, start, html, stamp, sec, mark) {
  const el = document.createElement("div");
  el.className = ["line", ...markClasses(mark)].join(" ");
  el.id = "L" + number;
  el.dataset.start = String(start);
  el.dataset.sec = String(sec);
  const ln = document.createElement("a");
  ln.className = "ln";
  ln.href = "#L" + number;
  ln.tabIndex = -1;
  ln.textContent = String(number);
  const ts = document.createElement("span");
  ts.className = "ts";
  ts.textContent = stamp || "";
  const tx = document.createElement("span");
  tx.className = "tx";
  tx.innerHTML = html;
  paint(tx);
  el.append(ln, ts);
  if (mark && mark.kind === "cmd") {
    const fold = document.createElement("button");
    fold.type = "button";
    fold.className = "fold";
    fold.setAttribute("aria-expanded", String(!folded.has(sec)));
    fold.setAttribute("aria-label", foldLabel(sec, folded.has(sec)));
    fold.textContent = folded.has(sec) ? "▸" : "▾";
    el.append(fold);
    if (number === failedLine()) el.classList.add("cmd-failed");
  } else if (folded.has(sec) && sec > 0) {
    el.classList.add("folded");
  }
  el.append(tx);
  if (searchText && tx.textContent.toLowerCase().includes(searchText)) el.classList.add("match");
  return el;
}

function stampNow() {
  const d = new Date();
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

/** Lines of `text` (starting at byte `start`) as elements; the last one may be partial. */
function build(text, start, firstNumber, converter, stamp, continuePartial) {
  const frag = document.createDocumentFragment();
  const parts = text.split("\n");
  let offset = start;
  let number = firstNumber;
  let last = null;
  let sec = continuePartial ? Number(continuePartial.dataset.sec) : sectionAt(firstNumber);
  for (let i = 0; i < parts.length; i++) {
    const seg = parts[i];
    const final = i === parts.length - 1;
    if (final && seg === "") { last = null; break; }
    if (i === 0 && continuePartial) {
      const raw = (continuePartial.raw || "") + seg;
      const mark = parseMark(raw);
      if (mark) {
        // A marked line that arrived in two parts: render it again, whole.
        if (mark.kind === "cmd") sec = Number(mark.fields[0]);
        learn(mark, number);
        last = lineElement(number, Number(continuePartial.dataset.start), converter.ansi_to_html(mark.text), stamp, sec, mark);
        continuePartial.replaceWith(last);
      } else {
        const tx = continuePartial.querySelector(".tx");
        tx.insertAdjacentHTML("beforeend", converter.ansi_to_html(seg));
        paint(tx);
        last = continuePartial;
      }
      last.raw = raw;
    } else {
      const mark = parseMark(seg);
      if (mark) {
        if (mark.kind === "cmd") sec = Number(mark.fields[0]);
        learn(mark, number);
      }
      last = lineElement(number, offset, converter.ansi_to_html(mark ? mark.text : seg), stamp, sec, mark);
      last.raw = seg;
      frag.append(last);
    }
    offset += byteLength(seg) + (final ? 0 : 1);
    if (!final) number++;
  }
  return { frag, partial: last, nextLine: number, end: offset };
}

function count() { return logEl.childElementCount; }
function firstEl() { return logEl.firstElementChild; }

function trimTop() {
  let extra = count() - CAP;
  if (extra <= 0) return;
  const keepScroll = !following;
  const before = logEl.scrollHeight;
  while (extra-- > 0) logEl.firstElementChild.remove();
  if (keepScroll) setScroll(logEl.scrollTop - (before - logEl.scrollHeight));
}

function trimBottom() {
  let extra = count() - CAP;
  if (extra <= 0) return;
  stopLive();
  let removed = null;
  while (extra-- > 0) {
    removed = logEl.lastElementChild;
    removed.remove();
  }
  // The window now ends where the earliest removed line started: a line boundary inside the log.
  nextLine = Number(removed.id.slice(1));
  endOffset = Number(removed.dataset.start);
  partial = null;
  atEnd = false;
}

function status() {
  const first = firstEl();
  const lines = count();
  if (!lines) {
    stateEl.textContent = finished ? "This log is empty." : "Waiting for output…";
    emptyEl.hidden = false;
  } else {
    emptyEl.hidden = true;
    const a = Number(first.id.slice(1));
    const b = Number(logEl.lastElementChild.id.slice(1));
    stateEl.textContent = "Lines " + a + "–" + b + (live ? " · live" : finished && atEnd ? " · complete" : "");
  }
  logEl.dataset.lines = String(lines);
  logEl.dataset.atEnd = String(atEnd);
  earlierBtn.hidden = !(first && Number(first.id.slice(1)) > 1);
  laterBtn.hidden = atEnd;
  followBtn.setAttribute("aria-pressed", String(following && atEnd));
  followBtn.textContent = following && atEnd ? "Following" : "Follow";
}

function scrollToEnd() { setScroll(logEl.scrollHeight); }

function appendText(text, start, stamp) {
  const built = build(text, start, nextLine, ansi, stamp, partial);
  logEl.append(built.frag);
  partial = built.partial;
  nextLine = built.nextLine;
  endOffset = built.end;
  trimTop();
  if (following) scrollToEnd();
  status();
}

async function fetchPage(params) {
  const url = data.linesUrl + "&" + new URLSearchParams(params).toString();
  const resp = await fetch(url);
  if (!resp.ok) throw new Error((await window.BuildIt.errorText(resp)) || resp.statusText);
  return resp.json();
}

function stopLive() {
  if (live) window.BuildItLive.unlog(TAG);
  live = false;
}

function startLive() {
  if (live || finished && Number(data.attempt) !== Number(data.currentAttempt)) return;
  live = true;
  window.BuildItLive.log(TAG, {
    run_id: data.runId, stage: data.stage, attempt: Number(data.attempt), offset: endOffset,
  }, {
    onData(text, start) {
      if (start !== endOffset) return; // never render out of place
      appendText(text, start, stampNow());
    },
    onEnd() {
      live = false;
      finished = true;
      window.BuildIt.refresh(); // the header: final status, exit code, duration
      status();
    },
    onReload() {
      // We fell too far behind a fast stage: show the tail again and follow from there (the
      // commands that started in the skipped part are asked for again).
      refreshMarks();
      loadTail();
    },
  });
  window.BuildItLive.start();
}

async function refreshMarks() {
  const resp = await fetch(data.marksUrl);
  if (!resp.ok) return;
  for (const m of (await resp.json()).marks) learn(m, m.line);
}

/** Replace the window with `page` (tail or around a line). */
function show(page) {
  stopLive();
  logEl.textContent = "";
  ansi = new AnsiUp();
  partial = null;
  nextLine = page.first_line;
  endOffset = page.start;
  appendText(page.text, page.start, "");
  atEnd = page.at_end;
  if (atEnd) startLive();
  status();
}

async function loadTail() {
  busy = true;
  try {
    following = true;
    show(await fetchPage({ count: PAGE }));
    scrollToEnd();
  } finally { busy = false; status(); }
}

async function loadAround(line) {
  busy = true;
  try {
    following = false;
    show(await fetchPage({ line: line, count: PAGE }));
    target(line);
  } finally { busy = false; status(); }
}

function target(line) {
  for (const el of logEl.querySelectorAll(".line.target")) el.classList.remove("target");
  const el = document.getElementById("L" + line);
  if (!el) return false;
  el.classList.add("target");
  following = false;
  el.scrollIntoView({ block: "center" });
  ownTop = lastTop = logEl.scrollTop;
  status();
  return true;
}

async function loadEarlier() {
  const first = firstEl();
  if (busy || !first || Number(first.id.slice(1)) <= 1) return;
  busy = true;
  try {
    const page = await fetchPage({ before: first.dataset.start, count: PAGE });
    if (!page.text) return;
    const built = build(page.text, page.start, page.first_line, new AnsiUp(), "", null);
    const before = logEl.scrollHeight;
    logEl.prepend(built.frag);
    setScroll(logEl.scrollTop + logEl.scrollHeight - before);
    trimBottom();
  } finally { busy = false; status(); }
}

async function loadLater() {
  if (busy || atEnd) return;
  busy = true;
  try {
    const page = await fetchPage({ after: endOffset, count: PAGE });
    appendText(page.text, page.start, "");
    atEnd = page.at_end;
    if (atEnd) startLive();
  } finally { busy = false; status(); }
}

logEl.addEventListener("scroll", () => {
  const top = logEl.scrollTop;
  const fromBottom = logEl.scrollHeight - top - logEl.clientHeight;
  const up = top < lastTop;
  lastTop = top;
  const own = ownTop !== null && top === ownTop;
  ownTop = null;
  if (own) return;
  if (fromBottom > 40 && following && up) { following = false; status(); }
  // Pages load as the user scrolls towards an edge (the buttons do the same by keyboard).
  if (up && top < 40) loadEarlier();
  if (!up && fromBottom < 40 && !atEnd) loadLater();
});

followBtn.addEventListener("click", () => {
  if (!atEnd) {
    history.replaceState(null, "", location.pathname + location.search);
    loadTail();
    return;
  }
  following = true;
  scrollToEnd();
  status();
});
earlierBtn.addEventListener("click", loadEarlier);
laterBtn.addEventListener("click", loadLater);

function applyHash() {
  const m = /^#L(\d+)$/.exec(location.hash);
  if (!m) return false;
  const line = Number(m[1]);
  if (!target(line)) loadAround(line);
  return true;
}
window.addEventListener("hashchange", applyHash);

// Timestamps and wrapping are view preferences, remembered in this browser.
const tsBox = document.getElementById("toggle-timestamps");
const wrapBox = document.getElementById("toggle-wrap");
tsBox.checked = localStorage.getItem("buildit.log.ts") === "1";
wrapBox.checked = localStorage.getItem("buildit.log.wrap") !== "0";
function applyPrefs() {
  logEl.classList.toggle("show-ts", tsBox.checked);
  logEl.classList.toggle("wrap", wrapBox.checked);
  localStorage.setItem("buildit.log.ts", tsBox.checked ? "1" : "0");
  localStorage.setItem("buildit.log.wrap", wrapBox.checked ? "1" : "0");
}
tsBox.addEventListener("change", applyPrefs);
wrapBox.addEventListener("change", applyPrefs);
applyPrefs();

// Search: the server scans the whole log; results link to #L<n>, loaded lines are highlighted.
const results = document.getElementById("search-results");
document.getElementById("log-search").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const q = document.getElementById("log-search-q").value;
  searchText = q.toLowerCase();
  for (const el of logEl.children) {
    el.classList.toggle("match", !!searchText && el.querySelector(".tx").textContent.toLowerCase().includes(searchText));
  }
  results.textContent = "";
  if (!q) { results.hidden = true; return; }
  const resp = await fetch(data.searchUrl + "&q=" + encodeURIComponent(q));
  if (!resp.ok) { window.BuildIt.flash("Search failed: " + (await window.BuildIt.errorText(resp))); return; }
  const body = await resp.json();
  const heading = document.createElement("p");
  heading.textContent = body.matches.length
    ? body.matches.length + (body.truncated ? "+" : "") + " matching line" + (body.matches.length === 1 ? "" : "s") + ":"
    : "No line contains “" + q + "”.";
  results.append(heading);
  const list = document.createElement("ol");
  for (const m of body.matches) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = "#L" + m.line;
    a.textContent = "L" + m.line;
    const text = document.createElement("span");
    text.textContent = " " + m.text;
    li.append(a, text);
    list.append(li);
  }
  results.append(list);
  results.hidden = false;
});

// The header (status, attempt, agent, exit code, duration) follows the stage's events.
window.BuildIt.fragment("#log-head");
window.BuildItLive.on("stage", (m) => {
  if (m.stage && m.stage.run_id === data.runId && m.stage.name === data.stage) window.BuildIt.refresh();
});
window.BuildItLive.watch("run", { run_id: data.runId });
window.BuildItLive.start();

/** Open at the header of the command the stage failed in, marked, at the top of the view. */
async function openAtFailure(line) {
  busy = true;
  try {
    following = false;
    show(await fetchPage({ line: line, count: PAGE }));
    const el = document.getElementById("L" + line);
    if (el) {
      el.classList.add("cmd-failed");
      el.scrollIntoView({ block: "start" });
      ownTop = lastTop = logEl.scrollTop;
    }
  } finally { busy = false; status(); }
}

finished = ["succeeded", "failed", "cancelled", "skipped", "timed_out", "error"].includes(data.stageStatus);
window.BuildItLog = {
  state: () => ({
    lines: count(), first: firstEl() ? Number(firstEl().id.slice(1)) : null,
    last: logEl.lastElementChild ? Number(logEl.lastElementChild.id.slice(1)) : null,
    atEnd, live, following, endOffset, failedLine: failedLine(), sections: commands.size,
  }),
};
if (!applyHash()) {
  if (data.openLine) openAtFailure(Number(data.openLine));
  else loadTail();
}

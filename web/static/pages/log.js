// Stage log view. The DOM holds a window of consecutive lines [first, last] of the log, at most
// CAP of them: the tail on open (or the page around #L<n>), earlier pages loaded on demand when the
// user scrolls up, later pages when scrolling down, and live bytes over the page's WebSocket once
// the window reaches the end of what is stored. ANSI colours are rendered by ansi_up (which
// escapes HTML) as classes, under the page's CSP (see ansi.js). Timestamps are the browser's receive time of live lines; lines loaded from
// history have none.
import { ClassAnsiUp as AnsiUp, paint } from "/static/ansi.js";

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

function setScroll(top) {
  logEl.scrollTop = top;
  ownTop = lastTop = logEl.scrollTop;
}

const byteLength = (s) => encoder.encode(s).length;

function lineElement(number, start, html, stamp) {
  const el = document.createElement("div");
  el.className = "line";
  el.id = "L" + number;
  el.dataset.start = String(start);
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
  el.append(ln, ts, tx);
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
  for (let i = 0; i < parts.length; i++) {
    const seg = parts[i];
    const final = i === parts.length - 1;
    if (final && seg === "") { last = null; break; }
    const html = converter.ansi_to_html(seg);
    if (i === 0 && continuePartial) {
      const tx = continuePartial.querySelector(".tx");
      tx.insertAdjacentHTML("beforeend", html);
      paint(tx);
      last = continuePartial;
    } else {
      last = lineElement(number, offset, html, stamp);
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
      // We fell too far behind a fast stage: show the tail again and follow from there.
      loadTail();
    },
  });
  window.BuildItLive.start();
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

finished = ["succeeded", "failed", "cancelled", "skipped", "timed_out", "error"].includes(data.stageStatus);
window.BuildItLog = {
  state: () => ({
    lines: count(), first: firstEl() ? Number(firstEl().id.slice(1)) : null,
    last: logEl.lastElementChild ? Number(logEl.lastElementChild.id.slice(1)) : null,
    atEnd, live, following, endOffset,
  }),
};
if (!applyHash()) loadTail();

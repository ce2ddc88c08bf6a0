// Shared page behaviour: live clocks, REST actions from buttons, a debounced fragment refresh.
(function () {
  "use strict";

  function fmt(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    if (h) return h + "h " + String(m).padStart(2, "0") + "m";
    if (m) return m + "m " + String(r).padStart(2, "0") + "s";
    return r + "s";
  }

  /** "just now", "42 s ago", "3 min ago", "5 h ago", "2 days ago", then the date: worded as
   *  controller/web/format.py `ago` words it on the server (keep the two in step). */
  function ago(seconds, at) {
    if (seconds < 10) return "just now";
    if (seconds < 60) return Math.floor(seconds) + " s ago";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h ago";
    const days = Math.floor(seconds / 86400);
    if (days < 30) return days === 1 ? "1 day ago" : days + " days ago";
    return exact(at).slice(0, 10);
  }

  const pad = (n) => String(n).padStart(2, "0");
  /** The exact local time with the viewer's zone: "2026-11-27 22:05:03 CET". */
  function exact(at) {
    const d = new Date(at);
    const zone = (new Intl.DateTimeFormat(undefined, { timeZoneName: "short" }).formatToParts(d)
      .find((p) => p.type === "timeZoneName") || { value: "" }).value;
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + (zone ? " " + zone : "");
  }

  function tick() {
    const now = Date.now();
    for (const el of document.querySelectorAll(".duration[data-start]")) {
      if (!el.dataset.start || el.dataset.end) continue;
      // A run's clock starts from the time it already ran (data-offset: controller.runs.timing).
      const offset = Number(el.dataset.offset || 0);
      el.textContent = fmt(offset + (now - Date.parse(el.dataset.start)) / 1000);
    }
    for (const el of document.querySelectorAll("time.ago[datetime]")) {
      const at = Date.parse(el.getAttribute("datetime"));
      if (isNaN(at)) continue;
      el.textContent = ago((now - at) / 1000, at);
      if (!el.dataset.local) {
        el.title = exact(at);
        el.dataset.local = "true";
      }
    }
  }

  function flash(text, kind) {
    const el = document.getElementById("flash");
    if (!el) return;
    el.textContent = text;
    el.dataset.kind = kind || "error";
    el.hidden = !text;
  }

  async function errorText(resp) {
    try {
      const body = await resp.json();
      return body.detail || JSON.stringify(body);
    } catch (err) {
      return resp.status + " " + resp.statusText;
    }
  }

  const refreshers = [];
  let pending = null;
  /** Re-fetch the page's live fragment(s), at most about three times a second. */
  function refresh() {
    if (pending) return;
    pending = setTimeout(() => {
      pending = null;
      for (const fn of refreshers) fn();
    }, 300);
  }

  /** Swap `selector` with the same element of the page's URL fetched as an htmx request. */
  function fragment(selector, url) {
    refreshers.push(() => {
      const target = document.querySelector(selector);
      if (!target) return;
      // Keep keyboard focus on the same control across the swap.
      const active = document.activeElement;
      let again = null;
      if (active && active !== target && target.contains(active)) {
        if (active.dataset.action) again = '[data-action="' + CSS.escape(active.dataset.action) + '"]';
        else if (active.getAttribute("href")) again = 'a[href="' + CSS.escape(active.getAttribute("href")) + '"]';
      }
      window.htmx.ajax("GET", url ? url() : location.pathname + location.search, {
        target: selector, swap: "outerHTML", select: selector,
      }).then(() => {
        tick();
        const el = again && document.querySelector(selector + " " + again);
        if (el) el.focus({ preventScroll: true });
      });
    });
  }

  /** Headers of the page's JSON writes: the session cookie goes along, so the CSRF token must too. */
  function jsonHeaders() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return { "Content-Type": "application/json", "x-csrftoken": meta ? meta.content : "" };
  }

  document.addEventListener("click", async (ev) => {
    const button = ev.target.closest("button[data-action]");
    if (!button) return;
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    button.disabled = true;
    try {
      // POST by default; account pages also PUT and DELETE, some in another tenant than the page's.
      const method = button.dataset.method || "POST";
      const headers = jsonHeaders();
      if (button.dataset.tenant) headers["X-BuildIt-Tenant"] = button.dataset.tenant;
      const init = { method, headers };
      if (method !== "DELETE") init.body = button.dataset.body || "{}";
      const resp = await fetch(button.dataset.action, init);
      if (!resp.ok) {
        flash(button.textContent.trim() + " failed: " + (await errorText(resp)));
        return;
      }
      flash("");
      if (button.dataset.done === "goto-run") {
        const run = await resp.json();
        location.href = "/pipelines/" + (run.pipeline_id || button.dataset.pipelineId) + "/runs/" + run.number;
        return;
      }
      if (button.dataset.done === "goto") {  // another page shows what it did (or the thing is gone)
        location.href = button.dataset.goto;
        return;
      }
      refresh();
    } catch (err) {
      flash(button.textContent.trim() + " failed: " + err);
    } finally {
      button.disabled = false;
    }
  });

  window.BuildIt = { refresh, fragment, flash, errorText, tick, fmt, jsonHeaders };
  document.addEventListener("htmx:afterSwap", tick);
  document.addEventListener("DOMContentLoaded", () => {
    tick();
    setInterval(tick, 1000);
    if (window.BuildItLive) {
      window.BuildItLive.on("reload", refresh);
      window.BuildItLive.on("reconnect", refresh);
    }
  });
})();

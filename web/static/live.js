// One WebSocket per page at /ws (see README "Live updates"): watches and log streams are
// remembered and re-sent after every reconnect (logs from the last `next` byte offset, so a
// resumed log has no gap and no duplicate). Reconnects back off exponentially with jitter.
(function () {
  "use strict";
  const watches = new Map(); // key -> watch message
  const logs = new Map(); // client tag -> {msg, next, onData, onEnd, onReload}
  const listeners = {}; // message type -> [fn]
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  let ws = null;
  let backoff = 500;
  let timer = null;
  let opened = false;

  // The indicator is hidden until the page starts its socket: a page that is not live says nothing.
  function setStatus(state, text) {
    const el = document.getElementById("live-status");
    if (el) {
      el.dataset.state = state;
      el.textContent = text;
      el.hidden = false;
    }
  }

  function emit(type, msg) {
    for (const fn of listeners[type] || []) {
      try { fn(msg); } catch (err) { console.error(err); }
    }
  }

  function send(obj) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
  }

  function sendLog(tag) {
    const l = logs.get(tag);
    if (l) send(Object.assign({}, l.msg, { op: "log", id: tag, offset: l.next }));
  }

  function onLog(m) {
    const l = logs.get(m.id);
    if (!l) return;
    let text = m.data || "";
    let start = m.offset;
    if (m.next <= l.next) return; // everything already seen
    if (start > l.next) {
      // A gap would lose bytes: ask again from what we have.
      console.warn("log gap", l.next, start);
      send({ op: "unlog", id: m.id });
      sendLog(m.id);
      return;
    }
    if (start < l.next) {
      // Overlap (a resent range): drop the bytes we already have.
      text = decoder.decode(encoder.encode(text).slice(l.next - start));
      start = l.next;
    }
    l.next = m.next;
    l.onData(text, start, m.next);
  }

  function dispatch(m) {
    switch (m.type) {
      case "log": onLog(m); break;
      case "log_end": {
        const l = logs.get(m.id);
        if (l && m.next >= l.next) {
          logs.delete(m.id);
          l.onEnd(m.status, m.next);
        }
        break;
      }
      case "reload":
        if (m.topic === "log" && m.id !== undefined) {
          const l = logs.get(m.id);
          if (l) { if (l.onReload) l.onReload(); else sendLog(m.id); }
        } else {
          emit("reload", m);
        }
        break;
      case "error":
        console.warn("live:", m.message);
        emit("error", m);
        break;
      default:
        emit(m.type, m);
    }
  }

  function schedule() {
    clearTimeout(timer);
    const delay = backoff * (0.75 + Math.random() * 0.5);
    backoff = Math.min(backoff * 2, 15000);
    timer = setTimeout(connect, delay);
  }

  function connect() {
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
    setStatus(opened ? "reconnecting" : "connecting", opened ? "reconnecting…" : "connecting…");
    let sock;
    try { sock = new WebSocket(url); } catch (err) { schedule(); return; }
    ws = sock;
    sock.onopen = () => {
      backoff = 500;
      setStatus("live", "live");
      for (const msg of watches.values()) send(msg);
      for (const tag of logs.keys()) sendLog(tag);
      const again = opened;
      opened = true;
      // After a reconnect the page may have missed updates: listeners re-read state.
      if (again) emit("reconnect", {});
    };
    sock.onmessage = (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch (err) { return; }
      dispatch(m);
    };
    sock.onclose = () => {
      if (ws !== sock) return;
      setStatus("reconnecting", "reconnecting…");
      schedule();
    };
  }

  function key(msg) { return msg.topic + ":" + (msg.run_id || ""); }

  window.BuildItLive = {
    /** Watch a topic ("runs", "agents", or "run" with run_id) for as long as the page lives. */
    watch(topic, extra) {
      const msg = Object.assign({ op: "watch", topic: topic }, extra || {});
      watches.set(key(msg), msg);
      send(msg);
    },
    unwatch(topic, extra) {
      const msg = Object.assign({ op: "unwatch", topic: topic }, extra || {});
      watches.delete(key(msg));
      send(msg);
    },
    /** Stream a stage attempt's log from byte `offset`; handlers get text with its byte range. */
    log(tag, params, handlers) {
      logs.set(tag, {
        msg: { run_id: params.run_id, stage: params.stage, attempt: params.attempt },
        next: params.offset,
        onData: handlers.onData,
        onEnd: handlers.onEnd || function () {},
        onReload: handlers.onReload,
      });
      sendLog(tag);
    },
    unlog(tag) {
      if (logs.delete(tag)) send({ op: "unlog", id: tag });
    },
    on(type, fn) { (listeners[type] = listeners[type] || []).push(fn); },
    get socket() { return ws; },
    start() { if (!ws) connect(); },
  };
})();

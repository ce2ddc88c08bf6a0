// Account and repository pages (members, teams, API keys, agent tokens, secrets, repositories):
// forms call the REST API.
//
// A form with `data-api` (URL, `{field}` filled from the form) and `data-method` sends its fields as
// a JSON body: empty fields are left out, checkboxes are booleans, multiple selects are lists;
// `data-in="path"` fields only fill the URL, `data-in="tenant"` is sent as X-BuildIt-Tenant (the
// tenant the change is made in), `data-as` converts ("bool", "end-of-day" for a date, "keyed" for
// a "key:value" choice, "list" for words separated by commas or spaces), and `data-raw` keeps a
// value untrimmed (secret values); a form's `data-confirm` asks first. A value the
// server answers once (`data-secret` names its field) goes into the #shown-once panel, and nowhere
// else: reloading the page loses it. Then the form is reset and the page's data re-read.
(function () {
  "use strict";
  const B = window.BuildIt;
  B.fragment("#page-data");

  function fields(form) {
    const body = {};
    const path = {};
    let tenant = null;
    for (const el of form.elements) {
      if (!el.name || el.disabled || el.name === "_csrf_token" || el.type === "submit") continue;
      let value;
      if (el.type === "checkbox") value = el.checked;
      else if (el.type === "select-multiple") value = Array.from(el.selectedOptions, (o) => o.value);
      else {
        value = "raw" in el.dataset ? el.value : el.value.trim();
        if (value === "") continue;
      }
      if (el.dataset.in === "path") { path[el.name] = value; continue; }
      if (el.dataset.in === "tenant") { tenant = value; continue; }
      if (el.dataset.as === "bool") value = value === true || value === "true";
      else if (el.dataset.as === "list") value = value.split(/[\s,]+/).filter(Boolean);
      else if (el.dataset.as === "end-of-day") value = value + "T23:59:59Z";
      else if (el.dataset.as === "keyed") {
        const cut = value.indexOf(":");
        body[value.slice(0, cut)] = value.slice(cut + 1);
        continue;
      }
      body[el.name] = value;
    }
    const url = form.dataset.api.replace(/\{(\w+)\}/g, (_, name) => encodeURIComponent(path[name] || ""));
    return { url, body, tenant };
  }

  function showOnce(value, title, hint) {
    const panel = document.getElementById("shown-once");
    if (!panel) return;
    document.getElementById("shown-once-h").textContent = title || "New value";
    document.getElementById("shown-once-hint").textContent = hint || "";
    document.getElementById("shown-once-value").textContent = value;
    panel.hidden = false;
    panel.scrollIntoView({ block: "nearest" });
    document.getElementById("shown-once-value").focus({ preventScroll: true });
  }

  function forget() {
    const panel = document.getElementById("shown-once");
    if (!panel) return;
    document.getElementById("shown-once-value").textContent = "";
    panel.hidden = true;
  }

  document.addEventListener("click", async (ev) => {
    if (ev.target.closest("#shown-once-done")) forget();
    if (!ev.target.closest("#shown-once-copy")) return;
    const text = document.getElementById("shown-once-value").textContent;
    try {
      await navigator.clipboard.writeText(text);
      B.flash("Copied.", "ok");
    } catch (err) {
      // No clipboard (not a secure context): select the text for Ctrl-C instead.
      const range = document.createRange();
      range.selectNodeContents(document.getElementById("shown-once-value"));
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    }
  });

  document.addEventListener("submit", async (ev) => {
    const form = ev.target.closest("form[data-api]");
    if (!form) return;
    ev.preventDefault();
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    const what = form.dataset.what || "Saving";
    const { url, body, tenant } = fields(form);
    const headers = B.jsonHeaders();
    if (tenant) headers["X-BuildIt-Tenant"] = tenant;
    const method = form.dataset.method || "POST";
    const button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    try {
      const resp = await fetch(url, { method, headers, body: method === "DELETE" ? undefined : JSON.stringify(body) });
      if (!resp.ok) {
        B.flash(what + " failed: " + (await B.errorText(resp)));
        return;
      }
      const answer = resp.status === 204 ? null : await resp.json();
      form.reset();
      const secret = form.dataset.secret;
      if (secret && answer && answer[secret]) showOnce(answer[secret], form.dataset.secretTitle, form.dataset.secretHint);
      B.flash(form.dataset.doneText || "Saved.", "ok");
      B.refresh();
    } catch (err) {
      B.flash(what + " failed: " + err);
    } finally {
      if (button) button.disabled = false;
    }
  });
})();

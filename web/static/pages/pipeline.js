// Pipeline page: the trigger form posts to the REST API and opens the new run.
(function () {
  "use strict";
  const form = document.getElementById("trigger-form");
  if (!form) return;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const body = { branch: String(data.get("branch") || "").trim() || "main" };
    const sha = String(data.get("sha") || "").trim();
    if (sha) body.sha = sha;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const resp = await fetch(form.dataset.url, {
        method: "POST", headers: window.BuildIt.jsonHeaders(), body: JSON.stringify(body),
      });
      if (!resp.ok) {
        window.BuildIt.flash("Could not start a run: " + (await window.BuildIt.errorText(resp)));
        return;
      }
      const run = await resp.json();
      location.href = "/pipelines/" + form.dataset.pipelineId + "/runs/" + run.number;
    } catch (err) {
      window.BuildIt.flash("Could not start a run: " + err);
    } finally {
      button.disabled = false;
    }
  });
})();

// Pipeline page: the edit form. Saving PUTs the file to the REST API; an invalid file is refused
// with every diagnostic (FILE:LINE:COL), listed here: each one puts the cursor on its line and
// column in the editor. A saved file reloads the page (the new version, its stages and source).
(function () {
  "use strict";
  const B = window.BuildIt;
  const form = document.getElementById("edit-form");
  const open = document.getElementById("edit-open");
  if (!form || !open) return;
  const editor = document.getElementById("edit-config");
  const view = document.getElementById("source-view");
  const box = document.getElementById("edit-diagnostics");
  const list = document.getElementById("edit-diagnostics-list");
  const original = editor.value;

  function show(editing) {
    form.hidden = !editing;
    view.hidden = editing;
    open.hidden = editing;
    open.setAttribute("aria-expanded", String(editing));
    if (editing) editor.focus();
  }

  /** Put the cursor at 1-based `line`:`col` of the editor and scroll it into view. */
  function goTo(line, col) {
    const lines = editor.value.split("\n");
    let at = 0;
    for (let i = 0; i < Math.min(line - 1, lines.length); i++) at += lines[i].length + 1;
    at += Math.max(0, Math.min(col - 1, (lines[line - 1] || "").length));
    editor.focus();
    editor.setSelectionRange(at, at);
    const height = editor.scrollHeight / Math.max(lines.length, 1);
    editor.scrollTop = Math.max(0, (line - 3) * height);
  }

  function diagnostics(items) {
    list.replaceChildren();
    for (const d of items) {
      const li = document.createElement("li");
      const jump = document.createElement("button");
      jump.type = "button";
      jump.className = "link diagnostic";
      jump.dataset.line = d.line;
      jump.dataset.col = d.col;
      jump.textContent = d.text;
      jump.setAttribute("aria-label", "Go to line " + d.line + ", column " + d.col + ": " + d.message);
      jump.addEventListener("click", () => goTo(Number(d.line), Number(d.col)));
      li.appendChild(jump);
      list.appendChild(li);
    }
    box.hidden = items.length === 0;
  }

  open.addEventListener("click", () => show(true));
  document.getElementById("edit-cancel").addEventListener("click", () => {
    editor.value = original;
    diagnostics([]);
    show(false);
    open.focus();
  });

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const resp = await fetch(form.dataset.url, {
        method: "PUT", headers: B.jsonHeaders(), body: JSON.stringify({ config: editor.value }),
      });
      if (resp.status === 422) {
        const body = await resp.json();
        diagnostics((body.extra && body.extra.diagnostics) || []);
        B.flash("");
        box.focus();
        return;
      }
      if (!resp.ok) {
        B.flash("Saving failed: " + (await B.errorText(resp)));
        return;
      }
      location.reload();
    } catch (err) {
      B.flash("Saving failed: " + err);
    } finally {
      button.disabled = false;
    }
  });
})();

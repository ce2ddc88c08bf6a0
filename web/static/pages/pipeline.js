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

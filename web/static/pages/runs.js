// Dashboard and pipeline page: the runs table follows every run change (filtered client-side by
// pipeline on a pipeline page) by re-fetching the table fragment for the current URL.
(function () {
  "use strict";
  const pipelineId = document.body.dataset.pipelineId || null;
  window.BuildIt.fragment("#runs");
  window.BuildItLive.on("run", (m) => {
    if (pipelineId && m.run && m.run.pipeline_id !== pipelineId) return;
    window.BuildIt.refresh();
  });
  window.BuildItLive.watch("runs");
  window.BuildItLive.start();
  // Filters: keep the form in step with the URL after back/forward.
  window.addEventListener("popstate", () => window.BuildIt.refresh());
})();

// Run page: the DAG, stage table and actions follow the run's events by re-fetching the fragment.
(function () {
  "use strict";
  const runId = document.body.dataset.runId;
  window.BuildIt.fragment("#run-live");
  window.BuildItLive.on("run", (m) => { if (m.run && m.run.id === runId) window.BuildIt.refresh(); });
  window.BuildItLive.on("stage", (m) => { if (m.stage && m.stage.run_id === runId) window.BuildIt.refresh(); });
  window.BuildItLive.watch("run", { run_id: runId });
  window.BuildItLive.start();
})();

// Pipelines page: each card's last run (status and time) follows every run change by re-fetching
// the cards fragment; a new pipeline's first run brings its card up to date the same way.
(function () {
  "use strict";
  window.BuildIt.fragment("#pipelines-live");
  window.BuildItLive.on("run", () => window.BuildIt.refresh());
  window.BuildItLive.watch("runs");
  window.BuildItLive.start();
})();

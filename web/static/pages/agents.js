// Agents page: the fleet table follows agent events; "last seen" ticks client-side.
(function () {
  "use strict";
  window.BuildIt.fragment("#agents");
  window.BuildItLive.on("agent", () => window.BuildIt.refresh());
  window.BuildItLive.watch("agents");
  window.BuildItLive.start();
  // Heartbeats are not events: re-read the fleet now and then so load and last-seen stay true.
  setInterval(() => window.BuildIt.refresh(), 15000);
})();

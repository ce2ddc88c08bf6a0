// Run page: the last lines of each failed stage's log, rendered as the log page renders them
// (ANSI colours as classes under the CSP, BuildIt's own lines marked), after every live refresh.
import { ClassAnsiUp, paint } from "/static/ansi.js";
import { parseMark, markClasses } from "/static/logmarks.js";

function render(root) {
  for (const pre of root.querySelectorAll("pre.log-tail[data-ansi]:not([data-rendered])")) {
    const ansi = new ClassAnsiUp();
    const frag = document.createDocumentFragment();
    for (const raw of pre.textContent.replace(/\n$/, "").split("\n")) {
      const mark = parseMark(raw);
      const line = document.createElement("span");
      line.className = ["tail-line", ...markClasses(mark)].join(" ");
      line.innerHTML = ansi.ansi_to_html(mark ? mark.text : raw);
      paint(line);
      frag.append(line);
    }
    pre.textContent = "";
    pre.append(frag);
    pre.dataset.rendered = "true";
  }
}

render(document);
document.addEventListener("htmx:afterSettle", () => render(document));

// ANSI colours under the UI's Content-Security-Policy, which allows no inline styles: ansi_up's
// own HTML carries `style="color:rgb(…)"` attributes (blocked, and reported as violations). This
// converter writes classes for the text attributes and the 16 standard colours (app.css), and
// data-fg / data-bg for 256-colour and RGB colours, which paint() applies through the CSSOM (a
// script setting element.style is allowed by CSP; markup carrying style= is not).
import { AnsiUp } from "/static/vendor/ansi_up.js";

export class ClassAnsiUp extends AnsiUp {
  constructor() {
    super();
    this.use_classes = true;
  }

  transform_to_html(fragment) {
    const text = fragment.text;
    if (text.length === 0) return text;
    const html = this.escape_txt_for_html(text);
    const classes = [];
    const data = [];
    if (fragment.bold) classes.push("ansi-bold");
    if (fragment.faint) classes.push("ansi-faint");
    if (fragment.italic) classes.push("ansi-italic");
    if (fragment.underline) classes.push("ansi-underline");
    for (const [color, kind] of [[fragment.fg, "fg"], [fragment.bg, "bg"]]) {
      if (!color) continue;
      if (color.class_name !== "truecolor") classes.push(color.class_name + "-" + kind);
      else data.push(" data-" + kind + '="' + color.rgb.map(Number).join(",") + '"');
    }
    if (!classes.length && !data.length) return html;
    const cls = classes.length ? ' class="' + classes.join(" ") + '"' : "";
    return "<span" + cls + data.join("") + ">" + html + "</span>";
  }
}

/** Give the spans under `root` that carry data-fg / data-bg their RGB colours. */
export function paint(root) {
  for (const el of root.querySelectorAll("span[data-fg], span[data-bg]")) {
    if (el.dataset.fg) el.style.color = "rgb(" + el.dataset.fg + ")";
    if (el.dataset.bg) el.style.backgroundColor = "rgb(" + el.dataset.bg + ")";
  }
}

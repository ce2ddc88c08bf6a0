// BuildIt's own lines in a stage log (agent/contract/logmarks.py): a line that starts with the
// APC sequence ESC _ buildit;KIND;FIELDS ESC \ is the agent's, never the commands' output (the
// agent neutralizes output that starts like one). Kinds: cmd (a command starts: index, total),
// more (a further line of its text), note (BuildIt's own line), end (the closing line: status,
// the command it ended in, the count).
const MARK = /^\x1b_buildit;([a-z_0-9;]*)\x1b\\/;

/** The marker of one log line as {kind, fields, text}, or null for a line of output. */
export function parseMark(line) {
  if (!line.startsWith("\x1b_buildit;")) return null;
  const m = MARK.exec(line);
  if (!m) return null;
  const [kind, ...fields] = m[1].split(";");
  return { kind, fields, text: line.slice(m[0].length) };
}

/** CSS classes for a marked line (and a status for the closing one). */
export function markClasses(mark) {
  if (!mark) return [];
  switch (mark.kind) {
    case "cmd": return ["bi", "cmd"];
    case "more": return ["bi", "cmd-more"];
    case "end": return ["bi", "bi-end", "end-" + (mark.fields[0] || "unknown")];
    default: return ["bi", "bi-note"];
  }
}

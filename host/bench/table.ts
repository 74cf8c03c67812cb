// The benchmarks' tables, as Markdown, so a report pastes into the README as it is.

/**
 * A Markdown table: the header row, a rule, then one row per entry of `rows`,
 * every column padded to its widest cell. `head` and each row have the same
 * number of cells (strings, already formatted). Returns the lines, without a
 * trailing newline.
 */
export function markdownTable(head: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((l) => l[i]!.length)));
  const row = (c: readonly string[]): string => '| ' + c.map((x, i) => x.padEnd(w[i]!)).join(' | ') + ' |';
  return [row(head), '|' + w.map((n) => '-'.repeat(n + 2)).join('|') + '|', ...rows.map(row)];
}

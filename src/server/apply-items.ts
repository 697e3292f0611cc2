// How metrics items extend a step-ordered list of lines, on the server
// (metrics lines, server/runs.ts) and on the page (rows, web/src/main.ts): a
// line replaces the lines from its step on (a resumed run writes its steps
// again); `resume_from` drops the steps after it. No imports: the page
// bundles it.

export function applyItems<L>(lines: L[], items: ReadonlyArray<L | { resume_from: number }>, stepOf: (line: L) => number): void {
  for (const it of items) {
    const resume = typeof it === "object" && it !== null && !Array.isArray(it) && "resume_from" in it;
    const cut = resume ? (it as { resume_from: number }).resume_from + 1 : stepOf(it as L);
    while (lines.length > 0 && stepOf(lines[lines.length - 1]!) >= cut) lines.pop();
    if (!resume) lines.push(it as L);
  }
}

// The Eval panel: JavaScript run in one device's page (`s.eval(code, {to})`), only where the
// page has an `allow` hook that says yes; each result rendered as a Value, each refusal in
// plain words. Results are kept in memory, the latest 100.
import { el } from "../ui";
import { badge, refusal, unable, type Ctx } from "./panel";
import { valueView } from "./values";

const KEEP = 100;

export function evalPanel(root: HTMLElement, ctx: Ctx) {
  const code = el("textarea", { rows: "4", "data-testid": "eval-code", placeholder: "JavaScript to run in the page, e.g. document.title (Ctrl+Enter runs it)", spellcheck: "false" });
  const run = el("button", { type: "button", class: "primary", "data-testid": "eval-run" }, "Run");
  const deviceLine = el("span", { class: "muted", "data-testid": "eval-device" });
  const why = el("p", { class: "hint", "data-testid": "eval-why" });
  const output = el("ol", { class: "eval-output", "data-testid": "eval-output" });
  let letGo = 0;
  root.append(code, el("div", { class: "toolbar" }, run, deviceLine), why, output);

  code.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      void go();
    }
  });
  run.addEventListener("click", () => void go());

  async function go() {
    const text = code.value;
    const to = ctx.target();
    const s = ctx.session();
    const reason = unable(ctx, to, "eval");
    if (text.trim() === "") return;
    if (reason || !s || !to) {
      why.textContent = reason ?? "Pick one device above.";
      return;
    }
    const result = el("div", { class: "eval-result muted" }, "running…");
    const item = el("li", { class: "eval-item" },
      el("div", { class: "eval-head" }, badge(ctx, to), el("pre", { class: "eval-code" }, text)),
      result);
    item.addEventListener("dblclick", () => (code.value = text));
    output.prepend(item);
    while (output.children.length > KEEP) {
      output.lastElementChild?.remove();
      letGo += 1;
    }
    try {
      const r = await s.eval(text, { to });
      result.className = "eval-result";
      result.replaceChildren(el("span", { class: "muted" }, `${r.ms} ms `), valueView(r.result, false, true));
    } catch (e) {
      const err = e as { code?: string; value?: unknown };
      result.className = "eval-result failed";
      result.replaceChildren(el("span", { class: "error-text", "data-code": err?.code ?? "" }, refusal(e)));
      if (err?.code === "threw" && err.value !== undefined) result.append(el("div", {}, valueView(err.value, true, true)));
    }
  }

  function draw() {
    const to = ctx.target();
    deviceLine.textContent = to ? `in ${ctx.name(to)}'s page` : "";
    const reason = unable(ctx, to, "eval");
    run.disabled = reason !== undefined;
    why.textContent = reason ?? (letGo ? `${letGo} older results let go (this page keeps the latest ${KEEP}).` : "Runs in the page's global scope; double-click a result to edit its code again.");
  }

  ctx.store.listen((c) => {
    if (c.t === "reset") {
      output.replaceChildren();
      letGo = 0;
      draw();
    }
  });
  draw();
  return { redraw: draw };
}

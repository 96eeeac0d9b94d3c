// deskhost review: keyboard shortcuts. The pages work without this script.
// Queue: j/k select the next/previous row, o opens it, a approves it as proposed, r opens it
// at the reject form. Item: j/k go to the next/previous open item, a approves (with the
// edits in the form), r goes to the reject reason, u returns to the queue.
(() => {
  "use strict";
  const typing = (t) =>
    t instanceof HTMLElement &&
    (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
  const rows = () => Array.from(document.querySelectorAll("#queue tr.row"));
  let at = -1;
  const select = (i) => {
    const r = rows();
    if (!r.length) return;
    at = Math.max(0, Math.min(i, r.length - 1));
    r.forEach((row, j) => {
      row.classList.toggle("selected", j === at);
      row.setAttribute("aria-selected", j === at ? "true" : "false");
    });
    r[at].scrollIntoView({ block: "nearest" });
    const link = r[at].querySelector("a.open");
    if (link) link.focus({ preventScroll: true });
  };
  const follow = (id) => {
    const a = document.getElementById(id);
    if (a instanceof HTMLAnchorElement) location.href = a.href;
  };
  const submit = (form) => {
    if (form instanceof HTMLFormElement) form.requestSubmit();
  };
  const focusReason = () => {
    const reason = document.getElementById("reason");
    if (reason) {
      reason.scrollIntoView({ block: "center" });
      reason.focus();
    }
  };
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
    const queue = document.getElementById("queue") !== null;
    const row = at >= 0 ? rows()[at] : undefined;
    switch (e.key) {
      case "j":
        if (queue) select(at + 1);
        else follow("next");
        break;
      case "k":
        if (queue) select(at - 1);
        else follow("prev");
        break;
      case "o":
        if (row) location.href = row.dataset.href;
        break;
      case "a":
        submit(queue ? row && row.querySelector("form.quick") : document.getElementById("approve"));
        break;
      case "r":
        if (queue) {
          // The fragment names the reason field: navigating to it focuses it.
          if (row) location.href = row.dataset.href + "#reason";
        } else focusReason();
        break;
      case "u":
        if (!queue) follow("up");
        break;
      default:
        return;
    }
    e.preventDefault();
  });
  document.addEventListener("DOMContentLoaded", () => {
    if (location.hash === "#reason") focusReason();
    rows().forEach((row, i) => row.addEventListener("click", (e) => {
      if (!(e.target instanceof HTMLElement) || !e.target.closest("a, button, form")) select(i);
    }));
  });
})();

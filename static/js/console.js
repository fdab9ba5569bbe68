// Small behaviours of the console's pages; everything works without them.
(function () {
  "use strict";

  // Relative times ("4 s ago", core.display.ago) are told again every second from their
  // own datetime, so a cached part or a page left open never shows a stale age. The
  // server's clock is the reference: the page says what it was when it was made, and the
  // browser's own clock only measures the time since.
  const serverTime = document.querySelector('meta[name="server-time"]');
  const skew = serverTime ? Date.parse(serverTime.content) - Date.now() : 0;

  function span(seconds) {
    const s = Math.floor(Math.abs(seconds));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h";
    return Math.floor(s / 86400) + " d";
  }

  function retell() {
    const now = Date.now() + (isNaN(skew) ? 0 : skew);
    document.querySelectorAll("time[data-ago]").forEach(function (el) {
      const at = Date.parse(el.getAttribute("datetime"));
      if (isNaN(at)) return;
      const delta = (now - at) / 1000;
      const text = delta >= 0 ? span(delta) + " ago" : "in " + span(delta);
      if (el.textContent !== text) el.textContent = text;
    });
  }

  retell();
  setInterval(retell, 1000);
  document.addEventListener("htmx:afterSettle", retell);

  // Agent list: "select all on this page" and the count of selected agents.
  function updateSelection(form) {
    const boxes = form.querySelectorAll('input[name="agent"]');
    const checked = form.querySelectorAll('input[name="agent"]:checked').length;
    const all = form.querySelector("[data-select-all]");
    if (all) {
      all.checked = checked > 0 && checked === boxes.length;
      all.indeterminate = checked > 0 && checked < boxes.length;
    }
    const count = form.querySelector("[data-selected-count]");
    if (count) count.textContent = String(checked);
  }

  document.addEventListener("change", function (event) {
    const target = event.target;
    const form = target.closest && target.closest("#agent-selection");
    if (!form) return;
    if (target.matches("[data-select-all]")) {
      form.querySelectorAll('input[name="agent"]').forEach(function (box) { box.checked = target.checked; });
    }
    updateSelection(form);
  });

  // Forms that ask first (revoking a token, undoing a batch): the question is the form's
  // data-confirm; inline handlers are not allowed by the Content-Security-Policy.
  document.addEventListener("submit", function (event) {
    const form = event.target;
    const question = form.dataset && form.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });

  // Control dialogs: a button opens its confirmation dialog; Cancel closes it.
  document.addEventListener("click", function (event) {
    const opener = event.target.closest && event.target.closest("[data-open-dialog]");
    if (opener) {
      const dialog = document.getElementById(opener.dataset.openDialog);
      if (dialog && dialog.showModal) dialog.showModal();
      return;
    }
    const closer = event.target.closest && event.target.closest("[data-close-dialog]");
    if (closer) {
      const dialog = closer.closest("dialog");
      if (dialog) dialog.close();
    }
  });
})();

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
      // A second's disagreement between the clocks reads as now, not as "in 0 s".
      const text = delta > -2 ? span(Math.max(delta, 0)) + " ago" : "in " + span(delta);
      if (el.textContent !== text) el.textContent = text;
    });
  }

  retell();
  setInterval(retell, 1000);
  document.addEventListener("htmx:afterSettle", retell);
  document.addEventListener("l10:live-swapped", retell);  // static/js/live.js swapped parts in

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

  // Forms that ask first (revoking a token, undoing a batch, removing a member): the
  // question (data-confirm) is asked in the console's own dialog, whose confirming button
  // says what it does (data-confirm-button); the form is sent only when it is confirmed.
  // Inline handlers are not allowed by the Content-Security-Policy.
  let confirmDialog = null;

  function confirmFirst(form) {
    if (!confirmDialog) {
      confirmDialog = document.createElement("dialog");
      confirmDialog.className = "confirm";
      confirmDialog.setAttribute("aria-labelledby", "confirm-question");
      confirmDialog.dataset.testid = "confirm";
      const inner = document.createElement("form");
      inner.method = "dialog";
      const question = document.createElement("p");
      question.id = "confirm-question";
      const buttons = document.createElement("div");
      buttons.className = "buttons";
      const cancel = document.createElement("button");
      cancel.value = "cancel";
      cancel.textContent = "Cancel";
      const ok = document.createElement("button");
      ok.value = "ok";
      ok.className = "primary";
      buttons.append(cancel, ok);
      inner.append(question, buttons);
      confirmDialog.append(inner);
      document.body.append(confirmDialog);
    }
    confirmDialog.querySelector("#confirm-question").textContent = form.dataset.confirm;
    confirmDialog.querySelector('button[value="ok"]').textContent = form.dataset.confirmButton || "Confirm";
    confirmDialog.returnValue = "";
    confirmDialog.addEventListener("close", function () {
      if (confirmDialog.returnValue !== "ok") return;
      // A live part may have been read again while the question was open: send its twin.
      const action = form.getAttribute("action");
      const sent = form.isConnected ? form : Array.from(document.querySelectorAll("form[data-confirm]")).find(
        function (twin) { return twin.getAttribute("action") === action; }) || form;
      sent.dataset.confirmed = "yes";
      sent.requestSubmit();
      delete sent.dataset.confirmed;
    }, { once: true });
    confirmDialog.showModal();
  }

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!form.dataset || !form.dataset.confirm || form.dataset.confirmed === "yes") return;
    event.preventDefault();
    confirmFirst(form);
  });

  // A control dialog the server refused opens again at once, with its input and the reason.
  document.querySelectorAll("dialog[data-open-on-load]").forEach(function (dialog) {
    if (dialog.showModal) dialog.showModal();
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

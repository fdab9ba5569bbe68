// Live pages: one socket per page; the server sends the partials the views render and
// this swaps each element with the same id. Without it the pages still work (reload).
(function () {
  "use strict";

  const body = document.body;
  const address = body.dataset.liveUrl;
  if (!address || !("WebSocket" in window)) return;

  const status = document.getElementById("live-status");
  let seq = body.dataset.liveSeq === "" ? null : Number(body.dataset.liveSeq);
  let socket = null;
  let delay = 500;
  const MAX_DELAY = 15000;

  // "live-on" shows what only holds while updates arrive ("Live ·", the dashed step in progress).
  function say(text) {
    body.classList.toggle("live-paused", Boolean(text));
    body.classList.toggle("live-on", !text);
    if (!status) return;
    status.textContent = text || "";
    status.hidden = !text;
  }

  function advance(to) {
    if (typeof to === "number" && (seq === null || to > seq)) seq = to;
  }

  function watched() {
    return Array.from(document.querySelectorAll("[data-live-agent]"), function (row) {
      return row.dataset.liveAgent;
    });
  }

  function sendWatch() {
    if (socket && socket.readyState === WebSocket.OPEN && document.querySelector("#agent-rows")) {
      socket.send(JSON.stringify({ type: "watch", agents: watched() }));
    }
  }

  // Swap every top-level element of the fragment into the element with its id,
  // keeping what the person was doing there (a ticked box).
  function apply(html) {
    const template = document.createElement("template");
    template.innerHTML = html;
    Array.from(template.content.children).forEach(function (fresh) {
      const old = fresh.id && document.getElementById(fresh.id);
      if (!old) return;
      old.querySelectorAll("input[type=checkbox][name]").forEach(function (box) {
        const twin = fresh.querySelector('input[type=checkbox][name="' + box.name + '"][value="' + box.value + '"]');
        if (twin) twin.checked = box.checked;
      });
      // A link with the keyboard's focus keeps it (the overview's tiles are swapped every few seconds).
      const focused = document.activeElement;
      const href = focused && old.contains(focused) && focused.getAttribute("href");
      old.replaceWith(fresh);
      if (window.htmx) window.htmx.process(fresh);
      const twin = href && Array.from(fresh.querySelectorAll("a[href]")).find(function (a) {
        return a.getAttribute("href") === href;
      });
      if (twin) twin.focus({ preventScroll: true });
    });
    document.dispatchEvent(new CustomEvent("l10:live-swapped"));
  }

  // A text field of a form, which someone may be typing in (a decision's comment).
  const TYPED = "form textarea[name], form input[name]:not([type]), form input[name][type=text]";

  function typing(part) {
    const focused = document.activeElement;
    return Boolean(focused && part.contains(focused) && focused.matches(TYPED));
  }

  // A part with a field in use is read again once the field has been left for a moment
  // (not at once: leaving it may be the start of a click on the form's button, which a
  // swap would swallow). Meanwhile nothing is lost: the news is only postponed.
  const held = new Set();
  const HOLD = 1000;

  function hold(part) {
    if (held.has(part.id)) return;
    held.add(part.id);
    part.addEventListener("focusout", function () {
      window.setTimeout(function () {
        held.delete(part.id);
        refresh([part.id]);  // held again if the person came back to a field
      }, HOLD);
    }, { once: true });
  }

  // What was typed in a part's fields survives its reload, in the twin field of the
  // same form (by the form's address and the field's name), with the focus and caret.
  const typed = new Map();

  function keyOf(field) {
    return field.form.getAttribute("action") + "\n" + field.name;
  }

  document.addEventListener("htmx:beforeSwap", function (event) {
    const part = event.detail.target;
    if (!part || !part.id || !part.hasAttribute("data-live-part")) return;
    const kept = [];
    part.querySelectorAll(TYPED).forEach(function (field) {
      if (field.value) {
        kept.push({ key: keyOf(field), value: field.value, focused: field === document.activeElement,
          start: field.selectionStart, end: field.selectionEnd });
      }
    });
    if (kept.length) typed.set(part.id, kept);
  });

  document.addEventListener("htmx:afterSwap", function () {
    typed.forEach(function (kept, id) {
      const part = document.getElementById(id);
      typed.delete(id);
      if (!part) return;
      const fields = Array.from(part.querySelectorAll(TYPED));
      kept.forEach(function (was) {
        const twin = fields.find(function (field) { return keyOf(field) === was.key; });
        if (!twin || twin.value) return;  // gone (decided meanwhile), or the server filled it
        twin.value = was.value;
        if (was.focused) {
          twin.focus({ preventScroll: true });
          if (was.start !== null) twin.setSelectionRange(was.start, was.end);
        }
      });
    });
  });

  // Reload live parts over HTTP: those named (ids), or every one when events were missed.
  // A part already reloading reloads once more when that is done: its request may have
  // read the page before this news, and htmx would drop (or, as the part is replaced by
  // its answer, lose) a second request made meanwhile.
  const again = new Set();

  function refresh(ids) {
    document.querySelectorAll("[data-live-part]").forEach(function (part) {
      if (ids && ids.indexOf(part.id) < 0) return;
      if (typing(part)) {
        hold(part);
      } else if (part.classList.contains("htmx-request")) {
        again.add(part.id);
      } else if (window.htmx) {
        window.htmx.trigger(part, "l10:refresh");
      }
    });
  }

  function refreshAgain() {
    window.setTimeout(function () {
      const ids = Array.from(again).filter(function (id) {
        const part = document.getElementById(id);
        return part && !part.classList.contains("htmx-request");
      });
      ids.forEach(function (id) { again.delete(id); });
      if (ids.length) refresh(ids);
    }, 0);
  }

  document.addEventListener("htmx:afterSettle", refreshAgain);
  document.addEventListener("htmx:afterRequest", refreshAgain);

  function connect() {
    const url = new URL(address, window.location.href);
    url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
    if (seq !== null) url.searchParams.set("since", String(seq));
    socket = new WebSocket(url);
    socket.onopen = function () {
      delay = 500;
      sendWatch();
    };
    socket.onmessage = function (message) {
      let frame;
      try { frame = JSON.parse(message.data); } catch (e) { return; }
      if (frame.type === "ping") {
        socket.send('{"type":"pong"}');
      } else if (frame.type === "hello") {
        seq = frame.seq;
        say("");
      } else if (frame.type === "resync") {
        seq = frame.seq;
        say("");
        refresh();
      } else if (frame.type === "fragments") {
        seq = frame.seq;
        apply(frame.html);
      } else if (frame.type === "refresh") {
        // What the page shows moved on (a batch's progress, an agent's events): read again.
        advance(frame.seq);
        refresh(frame.parts);
      } else if (frame.type === "badge") {
        // The header's count of firing alerts nobody has acknowledged or snoozed.
        advance(frame.seq);
        const badge = document.getElementById("alert-badge");
        if (badge) {
          badge.textContent = String(frame.count);
          badge.hidden = !frame.count;
        }
      } else if (frame.type === "approvals") {
        // The header's count of approval requests waiting for a decision.
        advance(frame.seq);
        const asking = document.getElementById("approval-badge");
        if (asking) {
          asking.textContent = String(frame.count);
          asking.hidden = !frame.count;
        }
      } else if (frame.type === "overview") {
        // Tiles read now and the charts' newest end, every few seconds (dashboard/live.py).
        advance(frame.seq);
        apply(frame.html);
        if (frame.tails && window.L10Charts) window.L10Charts.applyTail(frame.tails);
      } else if (frame.type === "error" && window.console) {
        window.console.warn("live updates:", frame.code, frame.message);
      }
    };
    socket.onclose = function (event) {
      socket = null;
      body.classList.remove("live-on");
      if (event.code === 4401 || event.code === 4403) {
        say("Live updates stopped: " + (event.code === 4401 ? "sign in again." : "no access to this tenant."));
        return;
      }
      say("Live updates paused — reconnecting…");
      const wait = delay + Math.random() * delay * 0.3;
      delay = Math.min(delay * 2, MAX_DELAY);
      window.setTimeout(connect, wait);
    };
  }

  // After htmx swaps the rows (a filter, a page, a refresh), tell the server what is shown.
  document.addEventListener("htmx:afterSwap", sendWatch);
  connect();
})();

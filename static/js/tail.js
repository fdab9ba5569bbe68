// The events page's live tail (docs/events.md): new events that match the page's filters
// appear at the top as they happen, read from the event socket (topic "events.stored",
// one frame per stored batch).
// - Pause/Resume stops and restarts it; while a person has an event open it holds still
//   too, and says how many new events wait until the event is closed.
// - A burst neither freezes the page nor grows it: events wait in a bounded queue, are
//   drawn a few times a second at most, and the list keeps at most MAX_ROWS rows.
// Without the script (or the socket) the page is a plain list: reload for new events.
(function () {
  "use strict";

  const list = document.getElementById("event-list");
  if (!list || !list.dataset.tailUrl || !("WebSocket" in window)) return;

  const MAX_ROWS = 200; // rows kept in the list, and events kept waiting
  const DRAW_EVERY = 250; // ms between two draws, at most four a second
  const MAX_DELAY = 15000;
  const filter = JSON.parse(list.dataset.tail);
  const detailBase = list.dataset.detailBase; // …/events/0/
  const state = document.getElementById("tail-state");
  const toggle = document.getElementById("tail-toggle");
  const news = document.getElementById("tail-news");
  const count = document.getElementById("tail-count");
  const show = document.getElementById("tail-show");

  let waiting = []; // events not drawn yet, oldest first, fewer than MAX_ROWS
  let dropped = 0; // events that arrived while MAX_ROWS already waited
  let missed = false; // events went by while the socket was away
  let paused = false;
  let seq = null;
  let socket = null;
  let delay = 500;
  let connected = false;

  function matches(event) {
    if (filter.types.length && filter.types.indexOf(event.event_type) < 0) return false;
    if (filter.severities.length && filter.severities.indexOf(event.severity) < 0) return false;
    if (filter.agents.length && filter.agents.indexOf(String(event.agent_id)) < 0) return false;
    if (filter.end && new Date(event.timestamp) > new Date(filter.end)) return false;
    if (filter.text) {
      const inMessage = String(event.message || "").toLowerCase().indexOf(filter.text) >= 0;
      const inData = event.data && JSON.stringify(event.data).toLowerCase().indexOf(filter.text) >= 0;
      if (!inMessage && !inData) return false;
    }
    return true;
  }

  function held() {
    return paused || list.querySelector("details[open]") !== null;
  }

  function put(node, value) {
    if (node && node.textContent !== value) node.textContent = value; // no needless announcements
  }

  function say() {
    const pending = waiting.length + dropped;
    put(state, !connected ? "Reconnecting…" : paused ? "Paused" : held() ? "Holding still: an event is open" : "Live");
    if (toggle) {
      toggle.hidden = false;
      put(toggle, paused ? "Resume" : "Pause");
      toggle.setAttribute("aria-pressed", String(paused));
    }
    if (news) {
      news.hidden = pending === 0 || !held();
      put(count, pending + " new event" + (pending === 1 ? "" : "s"));
    }
  }

  function text(tag, className, value) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    node.textContent = value;
    return node;
  }

  function utc(iso) {
    const when = new Date(iso);
    return isNaN(when) ? String(iso) : when.toISOString().replace("T", " ").slice(0, 19);
  }

  // What the line says: the message, else the data in short, keys in order (as the page's own lines do).
  function said(event) {
    if (event.message) return String(event.message);
    if (!event.data) return "";
    return Object.keys(event.data).sort().map(function (key) {
      const value = event.data[key];
      return key + "=" + (typeof value === "string" ? value : JSON.stringify(value));
    }).join(" ");
  }

  function row(event) {
    const item = document.createElement("li");
    item.className = "event fresh";
    if (event.id != null) {
      item.id = "event-" + event.id;
      item.dataset.eventId = String(event.id);
    }
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    const time = text("time", "", utc(event.timestamp));
    time.setAttribute("datetime", event.timestamp);
    const severity = String(event.severity || "info");
    summary.append(
      time, " ",
      text("span", "sev sev-" + severity, severity.charAt(0).toUpperCase() + severity.slice(1)), " ",
      text("code", "type", event.event_type), " ",
      text("span", "agent", event.external_id || (event.agent_id ? String(event.agent_id).slice(0, 8) : "—")), " ",
      text("span", "event-msg", said(event).slice(0, 200))
    );
    details.append(summary, text("div", "event-detail", ""));
    item.append(details);
    return item;
  }

  function draw() {
    if (!waiting.length && !dropped && !missed) return;
    const fragment = document.createDocumentFragment();
    for (let i = waiting.length - 1; i >= 0; i--) fragment.append(row(waiting[i]));
    if (dropped || missed) {
      const gap = text("li", "event gap", dropped
        ? dropped + " more event" + (dropped === 1 ? "" : "s") + " arrived here. "
        : "Events went by while the connection was away. ");
      const again = text("a", "", "Reload to see them");
      again.href = window.location.href;
      gap.append(again);
      fragment.append(gap);
    }
    list.prepend(fragment);
    while (list.children.length > MAX_ROWS) list.lastElementChild.remove();
    const empty = document.getElementById("event-empty");
    if (empty) empty.remove();
    waiting = [];
    dropped = 0;
    missed = false;
    say();
  }

  function arrive(event) {
    if (!matches(event)) return;
    if (waiting.length >= MAX_ROWS - 1) { // room for the line that says how many went by
      waiting.shift();
      dropped++;
    }
    waiting.push(event);
  }

  window.setInterval(function () {
    if (!held()) draw();
    else say();
  }, DRAW_EVERY);

  // An event opened for the first time reads its detail (its links, its data in full).
  list.addEventListener("toggle", function (e) {
    const details = e.target;
    say();
    if (!details.open) return;
    const item = details.closest("li");
    const box = details.querySelector(".event-detail");
    if (!item || !box || box.childElementCount || !item.dataset.eventId) return;
    box.textContent = "Loading…";
    fetch(detailBase.replace(/0\/$/, item.dataset.eventId + "/"), {
      headers: { "HX-Request": "true" },
      credentials: "same-origin",
    })
      .then(function (response) {
        if (!response.ok) throw new Error(String(response.status));
        return response.text();
      })
      .then(function (html) { box.innerHTML = html; })
      .catch(function () { box.textContent = "This event could not be read; open it again."; });
  }, true);

  if (toggle) {
    toggle.addEventListener("click", function () {
      paused = !paused;
      say();
    });
  }
  if (show) {
    show.addEventListener("click", function () {
      list.querySelectorAll("details[open]").forEach(function (d) { d.open = false; });
      paused = false;
      draw();
      say();
    });
  }

  function connect() {
    const url = new URL(list.dataset.tailUrl, window.location.href);
    url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(url);
    socket.onopen = function () {
      delay = 500;
      const frame = { type: "subscribe", topics: ["events.stored"] };
      if (seq !== null) frame.since = seq;
      socket.send(JSON.stringify(frame));
    };
    socket.onmessage = function (message) {
      let frame;
      try { frame = JSON.parse(message.data); } catch (e) { return; }
      if (frame.type === "ping") {
        socket.send('{"type":"pong"}');
      } else if (frame.type === "subscribed") {
        if (seq === null) seq = frame.seq;
        connected = true;
        list.dataset.tailReady = "true";
        say();
      } else if (frame.type === "resync") {
        // Events went by while the socket was away, more than the server keeps: say so.
        seq = frame.seq;
        missed = true;
      } else if (frame.type === "event" && frame.topic === "events.stored") {
        if (typeof frame.seq === "number") seq = frame.seq;
        (frame.data.events || []).forEach(arrive);
        dropped += frame.data.omitted || 0; // a batch too big to send whole: say how many more
      } else if (frame.type === "error" && window.console) {
        window.console.warn("live tail:", frame.code, frame.message);
      }
    };
    socket.onclose = function (event) {
      socket = null;
      connected = false;
      delete list.dataset.tailReady;
      if (event.code === 4401 || event.code === 4403) {
        if (state) state.textContent = "Live tail stopped: " + (event.code === 4401 ? "sign in again." : "no access.");
        return;
      }
      say();
      const wait = delay + Math.random() * delay * 0.3;
      delay = Math.min(delay * 2, MAX_DELAY);
      window.setTimeout(connect, wait);
    };
  }

  say();
  connect();
})();

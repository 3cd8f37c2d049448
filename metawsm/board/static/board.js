// metawsm board: live updates from the event stream, and the keyboard. No library, no build.
"use strict";
(function () {
  const body = document.body;
  if (!body.dataset.signedIn) return;
  const status = document.getElementById("live-status");
  const live = document.getElementById("live");

  function say(state, text) {
    if (!status) return;
    status.dataset.state = state;
    status.textContent = text;
  }

  // ---- live: re-read the page's live part when an event commits ----
  let pending = null;
  let refreshing = false;
  let again = false;

  function scheduleRefresh() {
    if (pending) return;
    pending = setTimeout(function () { pending = null; refresh(); }, 120);
  }

  async function refresh() {
    if (!live) return;
    if (refreshing) { again = true; return; }
    refreshing = true;
    try {
      const response = await fetch(location.href, {
        headers: { "X-Board-Fragment": "live" }, credentials: "same-origin", cache: "no-store",
      });
      if (response.status === 401) { location.assign("/signin?next=" + encodeURIComponent(location.pathname + location.search)); return; }
      if (response.ok) morph(live, await response.text());
    } catch (e) {
      say("disconnected", "disconnected");
    } finally {
      refreshing = false;
      if (again) { again = false; scheduleRefresh(); }
    }
  }

  // Keep what the person is working in: an element whose id and data-version are unchanged,
  // or that holds focus or typed text, stays as it is; the rest comes from the server.
  function busy(node) {
    if (node.contains(document.activeElement) && document.activeElement !== document.body) return true;
    return Array.from(node.querySelectorAll("textarea, input[type=text]")).some(function (f) { return f.value !== ""; });
  }

  function morph(target, html) {
    const incoming = document.createElement("template");
    incoming.innerHTML = html;
    const place = holdPlace(target);
    mergeChildren(target, incoming.content);
    restorePlace(place);
    document.dispatchEvent(new CustomEvent("board:updated"));
  }

  // Moving the kept nodes takes them out of the document for a moment: the browser then
  // blurs the focused field (the next keys typed would be shortcuts) and clamps the scroll
  // to the emptied page (a jump to the top). So note the focused field, its caret and where
  // an anchor is on the screen (the focused field, else the first element in view), and put
  // them back before the next paint: what the person looks at does not move.
  function holdPlace(target) {
    const active = document.activeElement;
    const focused = active && active !== document.body && target.contains(active) ? active : null;
    let anchor = focused;
    if (!anchor) {
      anchor = Array.from(target.querySelectorAll("[id]")).find(function (el) {
        return el.getBoundingClientRect().bottom > 0;
      }) || null;
    }
    let caret = null;
    try {
      if (focused && typeof focused.selectionStart === "number") caret = [focused.selectionStart, focused.selectionEnd];
    } catch (e) { caret = null; }
    return { focused: focused, caret: caret, anchor: anchor, id: anchor ? anchor.id : "",
             top: anchor ? anchor.getBoundingClientRect().top : 0 };
  }

  function restorePlace(place) {
    const f = place.focused;
    if (f && f.isConnected && document.activeElement !== f) {
      f.focus({ preventScroll: true });
      if (place.caret) f.setSelectionRange(place.caret[0], place.caret[1]);
    }
    const anchor = place.anchor && place.anchor.isConnected ? place.anchor : (place.id && document.getElementById(place.id));
    if (!anchor) return;
    const moved = anchor.getBoundingClientRect().top - place.top;
    if (moved) window.scrollBy(0, moved);
  }

  function mergeChildren(target, source) {
    const old = new Map();
    target.querySelectorAll("[id]").forEach(function (el) { old.set(el.id, el); });
    source.querySelectorAll("[id]").forEach(function (el) {
      const before = old.get(el.id);
      if (!before) return;
      if (before.dataset.version === el.dataset.version && before.dataset.version !== undefined) {
        el.replaceWith(before);  // unchanged: keep the node (and its selection)
      } else if (before.hasAttribute("data-item") && busy(before)) {
        el.replaceWith(before);  // being typed in: keep it until it is sent
      } else if (before.classList.contains("selected")) {
        el.classList.add("selected");
        el.setAttribute("aria-current", "true");
      }
    });
    target.replaceChildren.apply(target, Array.from(source.childNodes));
  }

  let source = null;
  let everOpen = false;
  function connect() {
    const cursor = body.dataset.cursor || "0";
    source = new EventSource("/board/events?cursor=" + encodeURIComponent(cursor));
    source.onopen = function () {
      say("live", "live");
      if (everOpen) scheduleRefresh();  // catch up after a disconnection
      everOpen = true;
    };
    source.onmessage = function (message) {
      if (message.lastEventId) body.dataset.cursor = message.lastEventId;
      scheduleRefresh();
    };
    source.onerror = function () {
      say("disconnected", "disconnected, retrying");
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(connect, 2000);
      }
    };
  }
  if (live && window.EventSource) connect(); else say("disconnected", "no live updates");

  // ---- keyboard ----
  function items() { return Array.from(document.querySelectorAll("#live [data-item]")); }
  function selected() { return document.querySelector("#live [data-item].selected"); }
  function select(el) {
    items().forEach(function (i) { i.classList.remove("selected"); i.removeAttribute("aria-current"); });
    if (!el) return;
    el.classList.add("selected");
    el.setAttribute("aria-current", "true");
    el.scrollIntoView({ block: "nearest" });
  }
  function move(step) {
    const all = items();
    if (!all.length) return;
    const at = all.indexOf(selected());
    const next = at < 0 ? (step > 0 ? 0 : all.length - 1) : Math.min(all.length - 1, Math.max(0, at + step));
    select(all[next]);
  }
  document.addEventListener("keydown", function (event) {
    const t = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT" || t.tagName === "SELECT" || t.isContentEditable)) {
      if (event.key === "Escape") t.blur();
      return;
    }
    const help = document.getElementById("help");
    if (event.key === "j") { move(1); event.preventDefault(); }
    else if (event.key === "k") { move(-1); event.preventDefault(); }
    else if (event.key === "a") {
      const box = (selected() || items()[0] || document).querySelector("form.answer textarea");
      if (box) { if (!selected()) select(box.closest("[data-item]")); box.focus(); event.preventDefault(); }
    } else if (event.key === "Enter") {
      const link = selected() && selected().querySelector("a.title, a[href^='/threads/']");
      if (link) { link.click(); event.preventDefault(); }
    } else if (event.key === "?") {
      if (help && !help.open) help.showModal(); event.preventDefault();
    }
  });
})();

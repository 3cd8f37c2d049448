// metawsm board, the threads pages: mark a thread seen as it is read. No library, no build.
//
// On a thread's newest page, while the page is visible, post the thread's last event sequence
// to /threads/{id}/seen (with the page's CSRF token), at load and after each live update
// (board.js says "board:updated"), so the inbox's and the list's unseen marks follow.
"use strict";
(function () {
  let posted = 0;
  let sending = false;

  function head() { return document.getElementById("thread-head"); }
  function csrf() {
    const field = document.querySelector("input[name=csrf]");
    return field ? field.value : "";
  }

  async function markSeen() {
    const h = head();
    if (!h || h.dataset.newest !== "true" || document.visibilityState !== "visible") return;
    const sequence = parseInt(h.dataset.lastSequence || "0", 10);
    const thread = h.closest("[data-thread-id]");
    if (!thread || !(sequence > posted) || sending) return;
    sending = true;
    try {
      const form = new URLSearchParams({ csrf: csrf(), sequence: String(sequence) });
      // The answer is a redirect back to the page: not followed, the mark is what counts.
      const response = await fetch("/threads/" + encodeURIComponent(thread.dataset.threadId) + "/seen", {
        method: "POST", body: form, credentials: "same-origin", redirect: "manual",
      });
      if (response.type === "opaqueredirect" || response.ok) {
        posted = sequence;
        h.dataset.seen = String(sequence);
      }
    } catch (e) {
      // Offline: the next update or visibility change tries again.
    } finally {
      sending = false;
    }
  }

  document.addEventListener("visibilitychange", markSeen);
  document.addEventListener("board:updated", markSeen);
  markSeen();
})();

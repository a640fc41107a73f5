// Ridgeline console: the little script the pages need, nothing else (no build step).
"use strict";

// The login link `ridgeline up` prints carries the token in the fragment (#token=…), which
// the browser never sends to any server: fill the form with it, then drop it from the address bar.
(function fillLoginToken() {
  var field = document.getElementById("token");
  var match = /(?:^|[#&])token=([^&]+)/.exec(window.location.hash);
  if (field && match) {
    field.value = decodeURIComponent(match[1]);
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
})();

// <main data-refresh="N">: every N seconds, the same page again, swapped in place (kept
// while a form field is being edited, or when the fetch fails: the page stays readable).
(function refresh() {
  var main = document.getElementById("content");
  var seconds = main && parseInt(main.getAttribute("data-refresh"), 10);
  if (!seconds) return;
  window.setInterval(function () {
    var active = document.activeElement;
    if (active && main.contains(active) && /INPUT|SELECT|TEXTAREA/.test(active.tagName)) return;
    fetch(window.location.href, { credentials: "same-origin", redirect: "manual" })
      .then(function (reply) { return reply.ok ? reply.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("content");
        if (fresh) main.innerHTML = fresh.innerHTML;
      })
      .catch(function () {});
  }, seconds * 1000);
})();

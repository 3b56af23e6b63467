// Keeps the counts on a board page current: every element with data-refresh="/board/…" is
// replaced every few seconds by a fresh copy fetched from that URL. Served by the service
// itself (CSP script-src 'self'); without it the page is the same, only not refreshed.
(function () {
  'use strict';
  var EVERY_MS = 5000;

  function refresh(element) {
    var url = element.getAttribute('data-refresh');
    if (!url || url.indexOf('/board/') !== 0) { return; }
    fetch(url, { credentials: 'same-origin', redirect: 'manual', cache: 'no-store' })
      .then(function (response) {
        // A session that ended redirects to the login form: stop rather than show it here.
        if (response.status !== 200 || response.headers.get('x-board-fragment') === null) {
          element.removeAttribute('data-refresh');
          element.setAttribute('data-refresh-stopped', String(response.status));
          return null;
        }
        return response.text();
      })
      .then(function (html) {
        if (html === null || html === undefined) { return; }
        var template = document.createElement('template');
        template.innerHTML = html;
        var fresh = template.content.firstElementChild;
        if (fresh && fresh.id === element.id) { element.replaceWith(fresh); }
      })
      .catch(function () { /* the network blinked: try again next time */ });
  }

  function tick() {
    document.querySelectorAll('[data-refresh]').forEach(refresh);
  }

  window.setInterval(tick, EVERY_MS);
})();

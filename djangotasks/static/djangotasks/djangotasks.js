/* djangotasks admin: keep each live log scrolled to its end, unless the reader scrolled up.
 * Configured by data attributes only: <pre data-djangotasks-follow>. No inline scripts. */
(function () {
  "use strict";
  var SLACK = 24; // pixels from the bottom that still count as "at the bottom"

  function atBottom(el) {
    return el.scrollHeight - el.scrollTop - el.clientHeight <= SLACK;
  }

  function follow(el) {
    if (el.djangotasksFollowing) {
      return;
    }
    el.djangotasksFollowing = true;
    var stick = true;
    el.scrollTop = el.scrollHeight;
    el.addEventListener("scroll", function () {
      stick = atBottom(el);
    });
    new MutationObserver(function () {
      if (stick) {
        el.scrollTop = el.scrollHeight;
      }
    }).observe(el, { childList: true, characterData: true, subtree: true });
    var details = el.closest("details");
    if (details) {
      details.addEventListener("toggle", function () {
        if (details.open && stick) {
          el.scrollTop = el.scrollHeight;
        }
      });
    }
  }

  function scan(root) {
    if (root && root.querySelectorAll) {
      root.querySelectorAll("[data-djangotasks-follow]").forEach(follow);
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    scan(document);
  });
  // htmx swapped in a new panel: follow the logs it brought.
  document.addEventListener("htmx:load", function (event) {
    scan(event.target);
    if (event.target.matches && event.target.matches("[data-djangotasks-follow]")) {
      follow(event.target);
    }
  });
})();

// Live pages: follow the projector's progress (GET /console/progress) and, once the read
// models moved, fetch this page again and swap in its parts marked data-live (never the
// forms, so nothing typed is lost). Every 30 s the page is fetched anyway: ages and overdue
// marks move with the clock. Pages work without this script.
(function () {
  "use strict";
  var every = Number(document.body.dataset.poll || 0) * 1000;
  if (!every || !document.querySelector("[data-live]")) return;
  var seen = document.body.dataset.checkpoint;
  var swapped = Date.now();

  function swap() {
    return fetch(location.href, { credentials: "same-origin" }).then(function (answer) {
      if (!answer.ok) return;
      return answer.text().then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (part) {
          var replacement = part.id && fresh.getElementById(part.id);
          if (replacement && replacement.innerHTML !== part.innerHTML) {
            part.replaceWith(document.importNode(replacement, true));
          }
        });
        swapped = Date.now();
      });
    });
  }

  function tick() {
    fetch("/console/progress", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (progress) {
        if (!progress) return;
        var now = String(progress.checkpoint);
        if (now !== seen || Date.now() - swapped > 30000) {
          seen = now;
          return swap();
        }
      })
      .catch(function () {})
      .then(function () { setTimeout(tick, every); });
  }
  setTimeout(tick, every);
})();

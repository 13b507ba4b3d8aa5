// Draws the page's Plotly figures, and re-fetches a live page every two seconds.
// Plotting is plotly.js's own; this only hands it the figures the server made.
(function () {
  "use strict";
  function draw(root) {
    root.querySelectorAll("[data-figure]").forEach(function (div) {
      var spec = document.getElementById(div.dataset.figure);
      if (!spec || typeof Plotly === "undefined") return;
      var figure = JSON.parse(spec.textContent);
      Plotly.react(div, figure.data, figure.layout, { responsive: true, displaylogo: false });
    });
  }
  function busy() {
    var active = document.activeElement;
    return document.hidden || (active && active.closest && active.closest("form"));
  }
  function refresh() {
    var main = document.getElementById("live");
    if (!main || main.dataset.live !== "1" || busy()) return;
    fetch(location.href, { headers: { "X-Live": "1" }, credentials: "same-origin" })
      .then(function (reply) { return reply.ok ? reply.text() : null; })
      .then(function (html) {
        if (!html) return;
        var next = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        if (!next) return;
        main.innerHTML = next.innerHTML;
        main.dataset.live = next.dataset.live;
        main.dataset.refreshed = String(Date.now());
        draw(main);
      })
      .catch(function () { /* the dashboard restarts: try again next time */ });
  }
  document.addEventListener("DOMContentLoaded", function () {
    draw(document);
    setInterval(refresh, 2000);
  });
})();

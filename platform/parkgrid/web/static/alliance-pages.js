// Alliance pages: live countdowns (offer expiry, the 30-minute on-site clock) counting from
// the seconds the server rendered, and a button that fills a check-in with the device's
// position. Without this script the pages still show the server's static times.
(function () {
  "use strict";

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  // The same form as the server's clock_text filter: 12:05 or 1:02:03.
  function clockText(seconds) {
    var left = Math.abs(seconds);
    var hours = Math.floor(left / 3600);
    var minutes = Math.floor((left % 3600) / 60);
    var rest = left % 60;
    return hours ? hours + ":" + pad(minutes) + ":" + pad(rest) : minutes + ":" + pad(rest);
  }

  var started = Date.now();
  var clocks = Array.prototype.map.call(document.querySelectorAll("[data-countdown]"),
    function (el) {
      return { el: el, end: started + Number(el.dataset.seconds) * 1000 };
    });

  function tick() {
    var now = Date.now();
    clocks.forEach(function (clock) {
      var left = Math.round((clock.end - now) / 1000);
      var template = left > 0 ? clock.el.dataset.left : clock.el.dataset.over;
      clock.el.textContent = template.replace("{t}", clockText(left));
      clock.el.classList.toggle("overdue", left <= 0);
    });
  }

  if (clocks.length) {
    tick();
    window.setInterval(tick, 1000);
  }

  document.querySelectorAll("[data-fill-position]").forEach(function (button) {
    if (!navigator.geolocation) {
      return;
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      var form = button.form;
      navigator.geolocation.getCurrentPosition(function (position) {
        form.querySelector("[name=lat]").value = position.coords.latitude.toFixed(6);
        form.querySelector("[name=lon]").value = position.coords.longitude.toFixed(6);
      });
    });
  });
})();

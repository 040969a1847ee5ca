// The customer's signature box: draw with a finger, pen or mouse (pointer events); after each
// stroke the drawing is put in the form's hidden field as a PNG data URL, which the server
// decodes and checks. An untouched box leaves the field empty, and the server says so.
(function () {
  "use strict";

  document.querySelectorAll("[data-signature]").forEach(function (box) {
    var canvas = box.querySelector("canvas");
    var field = box.querySelector("input[type=hidden]");
    var clear = box.querySelector("[data-clear]");
    var ctx = canvas.getContext("2d");
    var drawing = false;
    var drawn = false;

    function blank() {
      ctx.fillStyle = "#ffffff";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.lineWidth = 2.5;
      ctx.lineCap = "round";
      ctx.lineJoin = "round";
      ctx.strokeStyle = "#111111";
      field.value = "";
      drawn = false;
    }

    // Pointer position in the canvas's own pixels (it may be scaled by the page's CSS).
    function at(event) {
      var rect = canvas.getBoundingClientRect();
      return [(event.clientX - rect.left) * canvas.width / rect.width,
              (event.clientY - rect.top) * canvas.height / rect.height];
    }

    canvas.addEventListener("pointerdown", function (event) {
      drawing = true;
      canvas.setPointerCapture(event.pointerId);
      var p = at(event);
      ctx.beginPath();
      ctx.moveTo(p[0], p[1]);
      event.preventDefault();
    });
    canvas.addEventListener("pointermove", function (event) {
      if (!drawing) {
        return;
      }
      var p = at(event);
      ctx.lineTo(p[0], p[1]);
      ctx.stroke();
      drawn = true;
      event.preventDefault();
    });

    function finish() {
      if (!drawing) {
        return;
      }
      drawing = false;
      if (drawn) {
        field.value = canvas.toDataURL("image/png");
      }
    }

    canvas.addEventListener("pointerup", finish);
    canvas.addEventListener("pointercancel", finish);
    clear.addEventListener("click", blank);
    blank();
  });
})();

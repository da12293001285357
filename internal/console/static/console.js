// The console's only script: loaded from the console itself (no inline
// script runs: the Content-Security-Policy forbids it). Every page works
// without it; it adds the Copy button, the scope search and the delete
// confirmation's button state.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var field = document.getElementById(button.dataset.copy);
      var status = document.getElementById("copy-status");
      var done = function () { if (status) { status.textContent = "Copied."; } };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(done, function () {
          field.select(); document.execCommand("copy"); done();
        });
      } else {
        field.select(); document.execCommand("copy"); done();
      }
    });
  });
  document.querySelectorAll("[data-filters]").forEach(function (input) {
    var table = document.getElementById(input.dataset.filters);
    input.addEventListener("input", function () {
      var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      table.querySelectorAll("tbody tr").forEach(function (row) {
        var text = (row.dataset.search || row.textContent).toLowerCase();
        row.hidden = !words.every(function (w) { return text.indexOf(w) >= 0; });
      });
    });
  });
  document.querySelectorAll("[data-must-equal]").forEach(function (input) {
    var button = document.getElementById(input.dataset.enables);
    var check = function () { button.disabled = input.value !== input.dataset.mustEqual; };
    input.addEventListener("input", check);
    check();
  });
});

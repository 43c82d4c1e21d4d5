// Progressive enhancements only: every action works without this file.
// - forms with data-confirm ask before submitting;
// - a "select all" checkbox (data-select-all="NAME") toggles the checkboxes named NAME.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) {
        event.preventDefault();
      }
    });
  });
  document.querySelectorAll("input[data-select-all]").forEach(function (toggle) {
    var name = toggle.getAttribute("data-select-all");
    var boxes = toggle.form
      ? toggle.form.querySelectorAll('input[type="checkbox"][name="' + name + '"]')
      : document.querySelectorAll('input[type="checkbox"][name="' + name + '"]');
    toggle.hidden = false;
    toggle.addEventListener("change", function () {
      boxes.forEach(function (box) { box.checked = toggle.checked; });
    });
  });
});

// Progressive enhancements only: every action works without this file.
// - forms with data-confirm ask before submitting;
// - a "select all" checkbox (data-select-all="NAME") toggles the checkboxes named NAME;
// - a copy button (data-copy="ID", hidden until here) copies the text of the element ID.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) {
      return;
    }
    var label = button.firstChild.textContent;
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(source.textContent).then(function () {
        button.firstChild.textContent = "Copied";
        window.setTimeout(function () { button.firstChild.textContent = label; }, 2000);
      });
    });
  });
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

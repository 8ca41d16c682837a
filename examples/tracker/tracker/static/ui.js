// tracker: small progressive enhancements. Every page works without them.
(function () {
  "use strict";

  // Markdown Preview in place: the server renders (POST /api/v1/markdown, the
  // same code the pages use); without this script the Preview button submits
  // the form and the page comes back with the preview.
  function preview(field, button) {
    var textarea = field.querySelector("textarea");
    var target = field.querySelector(".md-preview");
    var form = field.closest("form");
    var csrf = form && form.querySelector("input[name=csrf_token]");
    var headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (csrf) headers["X-CSRFToken"] = csrf.value;
    button.disabled = true;
    fetch(field.getAttribute("data-preview-url"), {
      method: "POST",
      headers: headers,
      credentials: "same-origin",
      body: JSON.stringify({ text: textarea.value }),
    })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        target.innerHTML = data.html || '<p class="muted">Nothing to preview.</p>';
      })
      .catch(function () {
        target.textContent = "The preview could not be loaded.";
      })
      .finally(function () {
        target.hidden = false;
        button.disabled = false;
      });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest(".md-preview-button");
    if (!button || !window.fetch) return;
    var form = button.closest("form");
    var field = form && form.querySelector(".md-field");
    if (!field) return;
    event.preventDefault();
    preview(field, button);
  });
})();
